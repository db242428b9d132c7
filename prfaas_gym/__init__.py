"""prfaas-gym: a Gymnasium model of cross-datacenter Prefill-as-a-Service LLM serving."""

from gymnasium.envs.registration import register

__version__ = "0.1.0"

register(id="PrfaasRoute-v0", entry_point="prfaas_gym.env:PrfaasRouteEnv")
