"""The VGG19 feature extractor and the only code that touches weight files."""
