"""What the features are for: matching, segmentation, weight transfer, colours and evaluation."""
