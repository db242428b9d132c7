"""The live serving loop (prefill/decode workers, KV over ZeroMQ, the policy-driven router).

Not built yet: no issue has asked for it so far. It will build :class:`ClusterView`s from
live telemetry and call the same :class:`prfaas_gym.contract.Policy` the gym evaluates.
"""
