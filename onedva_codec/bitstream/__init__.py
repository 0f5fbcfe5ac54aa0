"""The .odva format and what decides its bytes: the container (docs/format.md), the entropy prior and
range coding of latents, the noise stream a decoder starts from, and rate control (how many 1D tokens
each unit keeps).

May import: `onedva_codec.errors`. It knows nothing of the network that makes the latents.
"""
