"""``python -m jaxseg.data.synthetic --figures DIR`` / ``--time``."""

from jaxseg.data.synthetic.figures import main

main()
