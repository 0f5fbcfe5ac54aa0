"""Frames and files: reading and writing video and audio (files and YUV4MPEG2 pipes), pixel values and
layouts, chunks and tiles (the one place that pads and crops), motion scores, outputs written atomically.

May import: `onedva_codec.errors`. Nothing here knows of models or of the .odva format.
"""
