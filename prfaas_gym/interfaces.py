"""What a trained policy is bound to: its env's id and version, observation spec and action
meanings, one :class:`Interface` per env.

A run.json or an exported manifest records the four; a loader looks the record's env id up
here (:func:`interface`) and refuses a record whose version, spec hash or actions differ from
the running code's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prfaas_gym.errors import PrfaasInputError


@dataclass(frozen=True)
class Interface:
    """One env's policy interface (the values of the running code)."""

    env_id: str
    env_version: int
    actions: tuple[str, ...]
    n_features: int
    spec: Callable[[], dict]  #: the observation spec (names, order, units, normalisation)
    spec_hash: Callable[[], str]
    #: what the policy decides, for messages ("where each request prefills", ...)
    decides: str


def _interfaces() -> dict[str, Interface]:
    from prfaas_gym.actions import ACTIONS
    from prfaas_gym.env import ENV_ID, ENV_VERSION
    from prfaas_gym.featurizer import N_FEATURES, spec, spec_hash
    from prfaas_gym.role_actions import ROLE_ACTIONS
    from prfaas_gym.role_featurizer import N_ROLE_FEATURES, role_spec, role_spec_hash
    from prfaas_gym.roles_env import ROLES_ENV_ID, ROLES_ENV_VERSION

    return {
        ENV_ID: Interface(ENV_ID, ENV_VERSION, ACTIONS, N_FEATURES, spec, spec_hash,
                          "where each request prefills"),
        ROLES_ENV_ID: Interface(ROLES_ENV_ID, ROLES_ENV_VERSION, ROLE_ACTIONS, N_ROLE_FEATURES,
                                role_spec, role_spec_hash,
                                "the roles of the local nodes, every interval"),
    }


def env_ids() -> list[str]:
    """The env ids a policy can be trained on and loaded for."""
    return list(_interfaces())


def interface(env_id: object, where: object = None) -> Interface:
    """The :class:`Interface` of ``env_id``; :class:`PrfaasInputError` (at ``where``) naming
    the known ids for any other value."""
    known = _interfaces()
    if isinstance(env_id, str) and env_id in known:
        return known[env_id]
    raise PrfaasInputError(f"key 'env_id': expected one of {list(known)}, found {env_id!r}",
                           where)
