"""Face editing pipeline: region in → align → project → edit → render → paste back.

The image-side stages live in ``region`` (pixels and selection from the host or a file), ``align``
(FFHQ-style crop of the face and its transform) and ``paste`` (warping the edited crop back into the
region with a feathered, colour-matched blend).
"""
