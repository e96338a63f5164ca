"""The backbones (VGG19, AlexNet, VGG16 and DISTS's VGG16), their registry, and the only code that
touches weight files (``app.models.weights``)."""
