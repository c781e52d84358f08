"""Model internals: the fast paths beside the stock transformers models, behind one seam."""
