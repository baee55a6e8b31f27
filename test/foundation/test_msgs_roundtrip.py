"""arvla_msgs over real rclpy publishers/subscribers and services."""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from arvla_base.rosutil import ns_to_stamp, spin_until, stamp_to_ns


def test_vlprefix_round_trip(ros_context, executor):
    from arvla_msgs.msg import VLPrefix

    pub_node = Node("rt_pub", context=ros_context)
    sub_node = Node("rt_sub", context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    got: list[VLPrefix] = []
    sub_node.create_subscription(VLPrefix, "/arvla/test_prefix", got.append, qos)
    pub = pub_node.create_publisher(VLPrefix, "/arvla/test_prefix", qos)
    data = np.random.default_rng(1).standard_normal((7, 16)).astype(np.float32)
    msg = VLPrefix()
    ns_to_stamp(1_700_000_000_123_456_789, msg.header.stamp)
    msg.header.frame_id = "camera_optical"
    msg.frame_seq = 9
    msg.instruction = "pick up the red cube"
    msg.model_id = "test-model"
    msg.token_count, msg.dim = data.shape
    msg.data = data.ravel().tolist()
    ns_to_stamp(1_700_000_000_200_000_000, msg.compute_stamp)
    assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 10.0)
    pub.publish(msg)
    assert spin_until(executor, lambda: bool(got), 10.0), "no VLPrefix received"
    back = got[0]
    assert stamp_to_ns(back.header.stamp) == 1_700_000_000_123_456_789
    assert back.header.frame_id == "camera_optical" and back.frame_seq == 9
    assert back.instruction == "pick up the red cube" and back.model_id == "test-model"
    assert (back.token_count, back.dim) == (7, 16)
    np.testing.assert_array_equal(np.asarray(back.data, np.float32).reshape(7, 16), data)
    assert stamp_to_ns(back.compute_stamp) - stamp_to_ns(back.header.stamp) == 76_543_211


def test_services_round_trip(ros_context, executor):
    from arvla_msgs.srv import ResetMemory, SetInstruction

    server = Node("svc_server", context=ros_context)
    client_node = Node("svc_client", context=ros_context)
    executor.add_node(server)
    executor.add_node(client_node)
    seen = {}

    def set_instruction(req, resp):
        seen["instruction"] = req.instruction
        resp.success, resp.message = True, f"instruction set to '{req.instruction}'"
        return resp

    def reset(req, resp):
        seen["clear_prefix"] = req.clear_prefix
        resp.success, resp.message = True, "memory cleared"
        return resp

    server.create_service(SetInstruction, "/arvla/test_set_instruction", set_instruction)
    server.create_service(ResetMemory, "/arvla/test_reset", reset)
    c1 = client_node.create_client(SetInstruction, "/arvla/test_set_instruction")
    c2 = client_node.create_client(ResetMemory, "/arvla/test_reset")
    assert spin_until(executor, lambda: c1.service_is_ready() and c2.service_is_ready(), 10.0)
    f1 = c1.call_async(SetInstruction.Request(instruction="stack the cubes"))
    f2 = c2.call_async(ResetMemory.Request(clear_prefix=True))
    assert spin_until(executor, lambda: f1.done() and f2.done(), 10.0)
    assert f1.result().success and "stack the cubes" in f1.result().message
    assert f2.result().success
    assert seen == {"instruction": "stack the cubes", "clear_prefix": True}


def test_stamp_helpers_reject_negative():
    import pytest

    with pytest.raises(ValueError, match="negative"):
        ns_to_stamp(-1)
