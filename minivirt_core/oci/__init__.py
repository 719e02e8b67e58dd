"""OCI registries (the distribution spec) on the standard library: references, credentials
and tokens, the HTTP client, and KubeVirt containerDisks (the layer we write and read)."""
