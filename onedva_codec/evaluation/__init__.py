"""Measuring: per-frame metrics (PSNR, SSIM, MS-SSIM, LPIPS), rFVD's I3D features, the ported networks'
weights, `odva compare` and `odva bench` (anchors, VMAF, BD-rate, outputs). The codec never imports it.

May import: everything of the library below the command line (`onedva_codec.codec` included).
"""
