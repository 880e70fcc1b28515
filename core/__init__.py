"""The bottom layer: what every other package may import, and which imports none of them.

Client connection settings, runtime paths, the city's reference-data files and the shared
vocabulary (levels, rejection reasons, the city's code) live here once, so `schemas`,
`processors`, `topics`, `streams`, `cityops`, `bench` and `tests` all import downwards and no
two layers import each other (Quix Streams keeps its `ConnectionConfig` in such a leaf).
"""
