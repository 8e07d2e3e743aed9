"""Pose-graph optimisation over keyframes (ORB-SLAM's OptimizeEssentialGraph), with g2o.

Each edge holds the relative transform S_j S_i^-1 measured before the correction; a loop edge holds the
one the loop detection found. Optimising spreads the loop's correction over the keyframes between. Poses
are similarities (world to camera, [sR t; 0 1]): monocular maps let the scale vary (Sim(3)); RGB-D and
stereo maps keep it (SE(3)).
"""

from __future__ import annotations

from dataclasses import dataclass

import g2opy as g2o
import numpy as np

from slam.similarity import sim3, sim3_inverse, sim3_scale


@dataclass(frozen=True)
class PoseGraphEdge:
    i: int  # index into the pose array
    j: int
    S_ji: np.ndarray  # measured S_j S_i^-1


def relative(S_i: np.ndarray, S_j: np.ndarray) -> np.ndarray:
    return S_j @ sim3_inverse(S_i)


def optimize_pose_graph(poses: np.ndarray, edges: list[PoseGraphEdge], fixed: np.ndarray, with_scale: bool,
                        iterations: int = 20) -> np.ndarray:
    """Optimised poses (K,4,4) for the input ones (K,4,4); vertices flagged in `fixed` stay put."""
    optimizer = g2o.SparseOptimizer()
    if with_scale:
        solver = g2o.BlockSolverSim3(g2o.LinearSolverEigenSim3())
    else:
        solver = g2o.BlockSolverSE3(g2o.LinearSolverEigenSE3())
    algorithm = g2o.OptimizationAlgorithmLevenberg(solver)
    optimizer.set_algorithm(algorithm)
    for k, S in enumerate(poses):
        v = g2o.VertexSim3Expmap() if with_scale else g2o.VertexSE3Expmap()
        v.set_id(k)
        v.set_estimate(_to_g2o(S, with_scale))
        v.set_fixed(bool(fixed[k]))
        optimizer.add_vertex(v)
    for edge in edges:
        e = g2o.EdgeSim3() if with_scale else g2o.EdgeSE3Expmap()
        e.set_vertex(0, optimizer.vertex(edge.i))
        e.set_vertex(1, optimizer.vertex(edge.j))
        e.set_measurement(_to_g2o(edge.S_ji, with_scale))
        e.set_information(np.eye(7 if with_scale else 6))
        optimizer.add_edge(e)
    optimizer.initialize_optimization(0)
    optimizer.optimize(iterations)
    return np.stack([_from_g2o(optimizer.vertex(k).estimate(), with_scale) for k in range(len(poses))])


def _to_g2o(S: np.ndarray, with_scale: bool):
    s = sim3_scale(S)
    R = _nearest_rotation(S[:3, :3] / s)
    if with_scale:
        return g2o.Sim3(R, S[:3, 3].copy(), s)
    return g2o.SE3Quat(R, S[:3, 3].copy())


def _from_g2o(estimate, with_scale: bool) -> np.ndarray:
    if with_scale:
        rotation = estimate.rotation()
        R = rotation.matrix() if hasattr(rotation, "matrix") else np.asarray(rotation)
        return sim3(R, np.asarray(estimate.translation()), float(estimate.scale()))
    return np.asarray(estimate.matrix())


def _nearest_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
