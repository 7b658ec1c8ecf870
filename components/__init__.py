"""Custom TFX components: what the stock components leave to the pipeline author."""
