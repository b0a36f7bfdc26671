"""The napari-facing modules: the dock widget, the console function, reader, writer and
sample data. Importing this package imports none of them (nor napari, Qt or torch).

- :mod:`.widget`: the "Segment image" dock widget (its UI).
- :mod:`.controls`: the widget's settings controls, one per setting.
- :mod:`.worker`: the training thread behind the widget and what stops it.
- :mod:`.layers`: from an image layer to the engine and back (shared by widget and console).
- :mod:`.console`: :func:`~.console.segment_layer` for napari's console.
- :mod:`.reader`, :mod:`.writer`: label TIFFs as Labels layers.
- :mod:`.sample_data`: the sample images.
"""
