"""vmplane: a declarative VM control plane with KubeVirt-style rollout strategies."""

__version__ = "0.1.0"
