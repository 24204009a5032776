"""Stand-in for Colab's `google.colab` module: the kernel of `make test-colab` imports it at
start, as Colab's does, so the notebooks' set-up cells see `"google.colab" in sys.modules`."""
