"""Stand-in for `google.colab.output`: JAX's debugger imports it whenever google.colab is
loaded, as on Colab; nothing in the notebooks calls it."""
