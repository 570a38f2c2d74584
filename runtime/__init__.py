"""edgeact.runtime: the real-time runtime (C++ core via pybind11) and `rt-run`. Never imports torch."""
