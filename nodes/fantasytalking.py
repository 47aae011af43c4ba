"""RAP FantasyTalking Apply: core Wan 2.1 MODEL + speech -> the MODEL with FantasyTalking's audio
branch (nodes.wan_audio), and the video length that covers the speech."""

from __future__ import annotations

from comfy_api.latest import io

from ..rap_core.errors import RAPInputError
from ..rap_core.media.normalise import audio_to_mono
from ..rap_core.models.audio import WAV2VEC2_REPO, Wav2Vec2Encoder
from ..rap_core.models.fantasytalking import AUDIO_DIM, speech_tokens, tokens_per_frame, video_length
from .networks import load
from .types import RAPAudioEncoder, RAPFantasyTalking
from .wan_audio import WanAudio, patch_wan

SAMPLE_RATE = 16000  # wav2vec2's


class RAPFantasyTalkingApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPFantasyTalkingApply",
            display_name="RAP FantasyTalking Apply",
            category="RAP",
            description="Adds FantasyTalking's audio attention to a core Wan 2.1 I2V 14B MODEL (through ComfyUI's "
            "model patching; the loaded model is not changed) and gives the video length that covers the speech: "
            "connect `length` to Wan Image To Video. Use with any core sampler; cfg is the prompt's guidance.",
            inputs=[
                io.Model.Input("model", tooltip="Wan2.1-I2V-14B (480P or 720P) from a core loader."),
                RAPFantasyTalking.Input("fantasytalking"),
                RAPAudioEncoder.Input("audio_encoder", tooltip=f"{WAV2VEC2_REPO} (RAP Audio Encoder Loader)."),
                io.Audio.Input("audio", tooltip="Speech; any sample rate and channel count (mixed down to mono)."),
                io.Int.Input(
                    "fps",
                    default=23,
                    min=1,
                    max=120,
                    tooltip="The video's frame rate (FantasyTalking was trained at 23); use the same in Create Video.",
                ),
                io.Float.Input(
                    "audio_scale",
                    default=1.0,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="Weight of the audio attention; 0 leaves the model as it was.",
                ),
                io.Float.Input(
                    "audio_cfg",
                    default=4.5,
                    min=1.0,
                    max=20.0,
                    step=0.1,
                    tooltip="Audio guidance (an extra model pass per step where it applies); 1 turns it off. "
                    "Higher follows the speech more closely.",
                ),
                io.Float.Input(
                    "start_percent",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Where in the schedule audio guidance starts.",
                ),
                io.Float.Input(
                    "end_percent",
                    default=0.8,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Where it ends. Below about 0.4 lip sync suffers; 1.0 can blur the first frame.",
                ),
            ],
            outputs=[io.Model.Output(display_name="model"), io.Int.Output(display_name="length")],
        )

    @classmethod
    def execute(
        cls,
        model,
        fantasytalking,
        audio_encoder,
        audio: dict,
        fps: int,
        audio_scale: float,
        audio_cfg: float,
        start_percent: float,
        end_percent: float,
    ) -> io.NodeOutput:
        if start_percent > end_percent:
            raise RAPInputError(
                f"start_percent ({start_percent}) is after end_percent ({end_percent}); give start <= end."
            )
        encoder = audio_encoder.model
        if not isinstance(encoder, Wav2Vec2Encoder) or encoder.model.config.hidden_size != AUDIO_DIM:
            raise RAPInputError(
                f"FantasyTalking needs {WAV2VEC2_REPO}'s features ({AUDIO_DIM} channels); load that "
                "folder with RAP Audio Encoder Loader."
            )
        mono = audio_to_mono(audio["waveform"][0], audio["sample_rate"], SAMPLE_RATE)  # [S]
        load(audio_encoder)
        tokens = speech_tokens(encoder, fantasytalking, mono)  # [N, 2048]
        length = video_length(mono.numel(), SAMPLE_RATE, fps)
        talk = WanAudio(
            tokens,
            tokens_per_frame(tokens.shape[0], mono.numel(), SAMPLE_RATE, fps),
            audio_scale,
            audio_cfg,
            start_percent,
            end_percent,
        )
        return io.NodeOutput(patch_wan(model, fantasytalking, talk), length)
