"""eurelay control plane: tokens, the client protocol, the admin API, and the node's wiring."""
