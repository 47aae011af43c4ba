"""The shipped demo model: built in, offline, small, and its mouth follows speech it never heard."""

from safetensors import safe_open

from rap_core.eval.run import evaluate
from rap_core.loading.builtin import DEMO_WEIGHTS
from rap_core.models.mel import MelEncoder
from rap_core.pipeline import RAPPipeline

MAX_BYTES = 25 * 2**20


def test_demo_weights_are_committed_small_and_made_for_the_demo_preset():
    files = sorted(DEMO_WEIGHTS.glob("*.safetensors"))
    assert [path.name for path in files] == ["dit.safetensors", "vae.safetensors"]
    assert sum(path.stat().st_size for path in files) <= MAX_BYTES
    for path in files:
        with safe_open(path, "pt") as weights:
            assert weights.metadata()["preset"] == "demo"


def test_demo_model_animates_an_unseen_face_in_time_with_held_out_speech():
    pipe = RAPPipeline.from_preset("demo")  # no paths: the shipped weights and the weight-free mel encoder
    assert isinstance(pipe.audio_encoder, MelEncoder)
    scores = evaluate(pipe, clips=1, seconds=8.0, seed=7)
    assert scores["r"] >= 0.6  # the bar (0.82 measured)
    assert abs(scores["lag"]) <= 1
    assert scores["shuffled_r"] <= 0.2
