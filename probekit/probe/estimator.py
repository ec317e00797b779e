"""The scikit-learn estimator contract, without importing scikit-learn.

An estimator's ``__init__`` stores its arguments under their own names and does nothing else; what ``fit``
learns or derives is stored under names ending in ``_``. :class:`Estimator` adds ``get_params`` /
``set_params`` read off the ``__init__`` signature (as ``sklearn.base.BaseEstimator`` does), so
``sklearn.base.clone`` works, and turns reading a fitted attribute before ``fit`` into :class:`NotFittedError`.
"""

from __future__ import annotations

import inspect


class NotFittedError(ValueError, AttributeError):
    """A fitted attribute (a name ending in ``_``) was read before ``fit``.

    Like ``sklearn.exceptions.NotFittedError`` it is both a ValueError and an AttributeError, so ``hasattr``
    and ``getattr(estimator, name, default)`` keep working.
    """


class Estimator:
    """Mixin: ``get_params`` / ``set_params`` from the ``__init__`` signature, and :class:`NotFittedError`."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """The ``__init__`` parameter names, sorted (no ``*args`` / ``**kwargs``: they cannot be cloned)."""
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must name every parameter (no *args / **kwargs)")
            if p.name != "self":
                names.append(p.name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters.

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn compatibility; no parameter of these estimators is an estimator itself,
            so it changes nothing.

        Returns
        -------
        dict
            ``{name: value}`` for every ``__init__`` parameter, as stored.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters (fitted attributes are left as they are until the next ``fit``).

        Parameters
        ----------
        **params
            ``name=value`` for ``__init__`` parameters.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A name is not an ``__init__`` parameter (the message lists the valid ones); nothing is set then.
        """
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"invalid parameter(s) {', '.join(map(repr, unknown))} for {type(self).__name__}; "
                f"valid parameters: {', '.join(valid)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def _clear_fitted(self) -> None:
        """Forget what the last fit learned: delete every fitted attribute and private cache."""
        for name in [n for n in vars(self) if _fitted_name(n) or n.startswith("_")]:
            delattr(self, name)

    def __getattr__(self, name: str):
        # only called when normal lookup fails: a missing fitted attribute means "not fitted yet"
        if _fitted_name(name):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit before reading {name!r}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _fitted_name(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_")
