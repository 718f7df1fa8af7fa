"""Features that extend the pipeline: LoRA, ControlNet, IP-Adapter."""
