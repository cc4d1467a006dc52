"""Feature analyses of the paper (§4.2, supplement §3) on any dataset or run: `harness analyze`."""

from harness.analysis.dataset import analyze_dataset, codec_reconstructor

__all__ = ["analyze_dataset", "codec_reconstructor"]
