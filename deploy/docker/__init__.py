"""Files the image build uses (the Dockerfile copies them in one by one)."""
