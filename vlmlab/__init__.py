"""vlmlab: controlled ablations of vision-language models, the way the Idefics2 paper ran them."""

__version__ = "0.1.0"
