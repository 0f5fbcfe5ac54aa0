"""What a model is: its configuration, the network (encoder and pixel-space diffusion decoder), the
flow-matching sampler and its decoding schedule, and the model folder (weights, card, entropy prior)
that a file names.

May import: `onedva_codec.errors`, `video` (tile geometry), `bitstream` (the prior and quantizer a card
describes, the header a file must match). Runs nowhere in particular: `runtime` places it on devices.
"""
