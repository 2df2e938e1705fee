#include "media/vpx_codec.h"

#include <cstring>
#include <stdexcept>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>

namespace parley::media {

const char* toString(VideoCodec c) {
    return c == VideoCodec::vp8 ? "VP8" : "VP9";
}

struct VideoEncoder::Impl {
    vpx_codec_ctx_t ctx{};
    vpx_codec_enc_cfg_t cfg{};
    vpx_image_t image{};
    bool open = false;
    ~Impl() {
        if (open)
            vpx_codec_destroy(&ctx);
    }
};

VideoEncoder::VideoEncoder(const VideoEncoderSettings& s)
    : settings_(s), impl_(std::make_unique<Impl>()) {
    vpx_codec_iface_t* iface = s.codec == VideoCodec::vp8 ? vpx_codec_vp8_cx() : vpx_codec_vp9_cx();
    if (s.width <= 0 || s.height <= 0 || s.width > 4096 || s.height > 4096 || s.fps <= 0)
        throw std::runtime_error("video encoder: bad frame size or rate");
    vpx_codec_enc_cfg_t& cfg = impl_->cfg;
    if (vpx_codec_enc_config_default(iface, &cfg, 0) != VPX_CODEC_OK)
        throw std::runtime_error("video encoder: no default configuration");
    cfg.g_w = unsigned(s.width);
    cfg.g_h = unsigned(s.height);
    cfg.g_timebase = {1, s.fps};
    cfg.g_threads = unsigned(s.threads);
    cfg.g_lag_in_frames = 0;
    cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
    cfg.g_pass = VPX_RC_ONE_PASS;
    cfg.rc_end_usage = VPX_CBR;
    cfg.rc_target_bitrate = unsigned(s.bitrate / 1000);
    cfg.rc_min_quantizer = 2;
    cfg.rc_max_quantizer = 56;
    cfg.rc_undershoot_pct = 50;
    cfg.rc_overshoot_pct = 50;
    cfg.rc_buf_initial_sz = 500;
    cfg.rc_buf_optimal_sz = 600;
    cfg.rc_buf_sz = 1000;
    cfg.rc_dropframe_thresh = 0;
    cfg.kf_mode = VPX_KF_AUTO;
    cfg.kf_max_dist = unsigned(s.keyframeInterval);
    if (vpx_codec_enc_init(&impl_->ctx, iface, &cfg, 0) != VPX_CODEC_OK)
        throw std::runtime_error(std::string("video encoder: ") + vpx_codec_error(&impl_->ctx));
    impl_->open = true;
    if (s.codec == VideoCodec::vp8) {
        vpx_codec_control(&impl_->ctx, VP8E_SET_CPUUSED, s.cpuUsed);
        vpx_codec_control(&impl_->ctx, VP8E_SET_NOISE_SENSITIVITY, 0);
        vpx_codec_control(&impl_->ctx, VP8E_SET_STATIC_THRESHOLD, 1);
        vpx_codec_control(&impl_->ctx, VP8E_SET_MAX_INTRA_BITRATE_PCT, 300);
        vpx_codec_control(&impl_->ctx, VP8E_SET_TOKEN_PARTITIONS, 0);
    } else {
        vpx_codec_control(&impl_->ctx, VP8E_SET_CPUUSED, s.cpuUsed > 9 ? 9 : s.cpuUsed);
        vpx_codec_control(&impl_->ctx, VP9E_SET_AQ_MODE, 3);
        vpx_codec_control(&impl_->ctx, VP8E_SET_MAX_INTRA_BITRATE_PCT, 300);
        vpx_codec_control(&impl_->ctx, VP9E_SET_ROW_MT, 1);
    }
}

VideoEncoder::~VideoEncoder() = default;

EncodedFrame VideoEncoder::encode(const VideoFrame& frame, std::int64_t pts, bool forceKeyframe) {
    EncodedFrame out;
    if (frame.width != settings_.width || frame.height != settings_.height ||
        frame.data.size() < VideoFrame::sizeFor(frame.width, frame.height))
        return out;
    vpx_image_t* img = &impl_->image;
    vpx_img_wrap(img, VPX_IMG_FMT_I420, unsigned(frame.width), unsigned(frame.height), 1,
                 const_cast<std::uint8_t*>(frame.data.data()));
    vpx_enc_frame_flags_t flags = forceKeyframe ? VPX_EFLAG_FORCE_KF : 0;
    if (vpx_codec_encode(&impl_->ctx, img, pts, 1, flags, VPX_DL_REALTIME) != VPX_CODEC_OK)
        return out;
    vpx_codec_iter_t iter = nullptr;
    while (const vpx_codec_cx_pkt_t* pkt = vpx_codec_get_cx_data(&impl_->ctx, &iter)) {
        if (pkt->kind != VPX_CODEC_CX_FRAME_PKT)
            continue;
        auto* bytes = static_cast<const std::uint8_t*>(pkt->data.frame.buf);
        out.data.insert(out.data.end(), bytes, bytes + pkt->data.frame.sz);
        out.keyframe = out.keyframe || (pkt->data.frame.flags & VPX_FRAME_IS_KEY);
    }
    return out;
}

void VideoEncoder::setBitrate(int bitsPerSecond) {
    settings_.bitrate = bitsPerSecond;
    impl_->cfg.rc_target_bitrate = unsigned(bitsPerSecond / 1000);
    vpx_codec_enc_config_set(&impl_->ctx, &impl_->cfg);
}

struct VideoDecoder::Impl {
    vpx_codec_ctx_t ctx{};
    bool open = false;
    ~Impl() {
        if (open)
            vpx_codec_destroy(&ctx);
    }
};

VideoDecoder::VideoDecoder(VideoCodec codec, int threads) : impl_(std::make_unique<Impl>()) {
    vpx_codec_dec_cfg_t cfg{};
    cfg.threads = unsigned(threads);
    vpx_codec_iface_t* iface = codec == VideoCodec::vp8 ? vpx_codec_vp8_dx() : vpx_codec_vp9_dx();
    if (vpx_codec_dec_init(&impl_->ctx, iface, &cfg, 0) != VPX_CODEC_OK)
        throw std::runtime_error("video decoder: cannot initialise libvpx");
    impl_->open = true;
}

VideoDecoder::~VideoDecoder() = default;

bool VideoDecoder::decode(std::span<const std::uint8_t> frame, VideoFrame& out) {
    if (frame.empty() || frame.size() > (1u << 24))
        return false;
    if (vpx_codec_decode(&impl_->ctx, frame.data(), unsigned(frame.size()), nullptr, 0) !=
        VPX_CODEC_OK)
        return false;
    vpx_codec_iter_t iter = nullptr;
    vpx_image_t* img = nullptr;
    vpx_image_t* last = nullptr;
    while ((img = vpx_codec_get_frame(&impl_->ctx, &iter)))
        last = img;
    if (!last || last->fmt != VPX_IMG_FMT_I420)
        return false;
    int w = int(last->d_w), h = int(last->d_h);
    out.width = w;
    out.height = h;
    out.data.resize(VideoFrame::sizeFor(w, h));
    std::uint8_t* dst = out.data.data();
    for (int plane = 0; plane < 3; ++plane) {
        int pw = plane ? (w + 1) / 2 : w;
        int ph = plane ? (h + 1) / 2 : h;
        for (int y = 0; y < ph; ++y) {
            std::memcpy(dst, last->planes[plane] + std::ptrdiff_t(y) * last->stride[plane],
                        std::size_t(pw));
            dst += pw;
        }
    }
    return true;
}

bool isVp8Keyframe(std::span<const std::uint8_t> frame) {
    return frame.size() >= 3 && (frame[0] & 1) == 0;
}

} // namespace parley::media
