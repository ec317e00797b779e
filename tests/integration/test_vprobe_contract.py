"""VProbe keeps the scikit-learn estimator contract (scikit-learn itself is needed only for the clone test).

``__init__`` stores its arguments and nothing else, ``get_params`` / ``set_params`` round-trip, ``fit`` returns
the probe, ``score`` is the accuracy (a float) and ``score_table`` the full one-row table, and reading a fitted
attribute before fitting raises :class:`~probekit.probe.estimator.NotFittedError`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("pandas")

from test_probe import _small_data  # noqa: E402  (tests/ is on sys.path under pytest)

from probekit.probe.estimator import NotFittedError  # noqa: E402
from probekit.probe.vprobe import VProbe  # noqa: E402

FITTED = ("params_", "model_", "model_path_", "device_", "history_", "layer_name_", "majority_class_", "n_train_")


def _fitted_names(probe) -> set[str]:
    return {k for k in vars(probe) if k.endswith("_") and not k.startswith("_")}


def test_init_only_stores_its_arguments():
    betas = [0.9, 0.99]
    probe = VProbe(task="dep", rank=0, steps=7, betas=betas)
    assert probe.betas is betas  # stored as given, not converted
    assert set(vars(probe)) == set(probe.get_params())
    assert probe.get_params()["steps"] == 7 and probe.get_params(deep=False)["task"] == "dep"


def test_clone_gives_an_unfitted_probe_with_equal_params(gpt2):
    base = pytest.importorskip("sklearn.base")
    probe = VProbe(task="dep", rank=0, steps=7)
    copy = base.clone(probe)
    assert copy is not probe and type(copy) is VProbe
    assert copy.get_params() == probe.get_params()
    assert not _fitted_names(copy)
    probe.fit(gpt2, _small_data(4, tasks="dep"))
    fresh = base.clone(probe)
    assert fresh.get_params() == probe.get_params() and not _fitted_names(fresh)
    assert "unfitted" in repr(fresh) and "unfitted" not in repr(probe)


def test_set_params_round_trip():
    probe = VProbe(task="nece", rank=2)
    other = VProbe(task="value", rank=0, layer="blocks.0.hook_resid_post", steps=3, lr=0.1, seed=4)
    assert probe.set_params(**other.get_params()) is probe
    assert probe.get_params() == other.get_params()
    assert probe.set_params() is probe and probe.set_params(steps=9).steps == 9
    assert VProbe(**probe.get_params()).get_params() == probe.get_params()


def test_set_params_refuses_unknown_names():
    probe = VProbe(steps=5)
    with pytest.raises(ValueError, match=r"'stepz'.*valid parameters: .*steps"):
        probe.set_params(steps=6, stepz=1)
    assert probe.steps == 5  # nothing set


def test_reading_a_fitted_attribute_before_fit_is_a_clear_error():
    probe = VProbe()
    for name in FITTED:
        with pytest.raises(NotFittedError, match=f"not fitted yet.*{name}"):
            getattr(probe, name)
        assert not hasattr(probe, name)  # NotFittedError is an AttributeError too
    data = _small_data(2)
    for call in (
        lambda: probe.predict(data),
        lambda: probe.score(data),
        lambda: probe.score_table(data),
        lambda: probe.predict_features(torch.zeros(2, 64)),
        lambda: probe.save("unused"),
    ):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call()
    with pytest.raises(AttributeError) as info:
        probe.no_such_thing  # noqa: B018
    assert not isinstance(info.value, NotFittedError)


def test_parameters_are_checked_by_fit_not_init():
    feats, labels = torch.zeros(4, 8), [0, 1, 0, 1]
    for bad, match in (
        ({"task": "bogus"}, "unknown probe task"),
        ({"rank": -1}, "rank"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 2.5}, "batch_size"),
    ):
        probe = VProbe(**{"rank": 0, **bad})  # constructing never fails
        with pytest.raises(ValueError, match=match):
            probe.fit_features(feats, labels)
        assert not _fitted_names(probe)


def test_fit_returns_self_and_score_is_the_table_accuracy(gpt2):
    train = _small_data(6, tasks="dep")
    test = _small_data(3, tasks="dep", seed=1, split="test")
    probe = VProbe(task="dep", rank=0, steps=7, batch_size=16)
    assert probe.fit(gpt2, train) is probe
    assert set(FITTED) <= _fitted_names(probe) and len(probe.history_) == 7
    accuracy = probe.score(test)
    assert type(accuracy) is float
    table = probe.score_table(test, bootstrap=0)
    assert len(table) == 1 and accuracy == table.iloc[0]["accuracy"]
    assert accuracy == np.mean(probe.predict(test) == test.task("dep").labels)


def test_refit_forgets_the_previous_fit(gpt2):
    probe = VProbe(task="nece", rank=0, steps=2, batch_size=8).fit(gpt2, _small_data(3))
    assert probe.model_ is gpt2
    feats = torch.randn(6, gpt2.config.hidden_size)
    assert probe.fit_features(feats, [0, 1, 0, 1, 1, 0]) is probe
    assert probe.model_ is None and probe.model_path_ is None and len(probe.history_) == 2
    assert probe.predict_features(feats).shape == (6,)


def test_transform_gives_the_states_the_head_reads(gpt2):
    """``transform`` (public) returns the [END] states whose head logits are ``decision_function``."""
    data = _small_data(4)
    probe = VProbe("nece", rank=2, steps=3, batch_size=8, seed=0).fit(gpt2, data)
    states = probe.transform(data)
    assert states.shape == (len(data.task("nece")), gpt2.config.hidden_size) and states.dtype == torch.float32
    logits = probe.params_.logits(states).detach().cpu().numpy()
    assert np.allclose(logits, probe.decision_function(data), atol=1e-6)
    with pytest.raises(NotFittedError):
        VProbe("nece").transform(data)
