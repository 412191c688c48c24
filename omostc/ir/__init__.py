"""The backend-neutral IR: layers in order with boxes, colours and prompt paths (``model``,
``lowering``), masks at any size (``masks``), the colour sketch (``sketch``), pictures of the
layout (``pictures``); ``clip`` holds the CLIP tokenization and 77-token bags that
Stable-Diffusion-family backends use."""
