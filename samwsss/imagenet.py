"""ImageNet's per-channel RGB mean and std, for pixels scaled to [0, 1].

The input normalisation of the ImageNet-pretrained networks used here: torchvision's
ResNets (DeepLabV2), Swin, MiT and DINOv2 (the segmenters), RAM, SAM and Grounding DINO.
Plain Python floats, so importing this module loads no array library.
"""

#: Mean of the R, G and B channels.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Standard deviation of the R, G and B channels.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
