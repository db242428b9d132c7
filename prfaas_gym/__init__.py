"""prfaas-gym: a Gymnasium model of cross-datacenter Prefill-as-a-Service LLM serving."""

from gymnasium.envs.registration import register

from prfaas_gym import _compiled

_compiled.install()  # before any compiled submodule is imported

__version__ = "0.1.0"

register(id="PrfaasRoute-v0", entry_point="prfaas_gym.env:PrfaasRouteEnv")
register(id="PrfaasRoles-v0", entry_point="prfaas_gym.roles_env:PrfaasRolesEnv")
