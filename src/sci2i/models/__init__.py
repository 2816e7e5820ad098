"""Networks: backbones (VGG16, EfficientNet-Lite0), DeepLab-v2, generator, discriminator."""
