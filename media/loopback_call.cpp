#include "media/loopback_call.h"

#include "media/av_sync.h"
#include "media/pacer.h"

#include <algorithm>
#include <deque>
#include <map>
#include <random>

namespace parley::media {

namespace {

Bytes withFlow(Flow flow, const Bytes& bytes) {
    Bytes b;
    b.reserve(bytes.size() + 1);
    b.push_back(std::uint8_t(flow));
    b.insert(b.end(), bytes.begin(), bytes.end());
    return b;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    auto i = std::size_t(p * double(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

} // namespace

LoopbackResult runLoopback(LoopbackConfig config) {
    LoopbackResult result;
    std::mt19937 rng(std::uint32_t(config.seed));
    SimulatedLink forward(config.forward), backward(config.backward);

    // Audio
    std::unique_ptr<AudioSender> audioSender;
    std::unique_ptr<AudioReceiver> audioReceiver;
    std::map<std::uint32_t, Micros> audioCaptured; // RTP timestamp -> capture of first sample
    std::uint32_t audioFirstTs = 0;
    if (config.audio) {
        result.audio.enabled = true;
        config.opus.channels = config.audio->channels();
        AudioSenderConfig ac;
        ac.opus = config.opus;
        ac.ssrc = rng() | 1;
        ac.firstSequence = std::uint16_t(rng());
        ac.firstTimestamp = rng();
        audioFirstTs = ac.firstTimestamp;
        audioSender = std::make_unique<AudioSender>(ac);
        audioReceiver = std::make_unique<AudioReceiver>(config.opus.channels, ac.payloadType);
    }
    // Video
    std::unique_ptr<VideoSender> videoSender;
    std::unique_ptr<VideoReceiver> videoReceiver;
    std::map<std::uint32_t, std::pair<Micros, VideoFrame>> videoCaptured;
    int fps = 30;
    if (config.video) {
        result.video.enabled = true;
        fps = config.video->fps();
        VideoSenderConfig vc;
        vc.encoder = config.videoEncoder;
        vc.encoder.width = config.video->width();
        vc.encoder.height = config.video->height();
        vc.encoder.fps = fps;
        vc.ssrc = rng() | 1;
        vc.firstSequence = std::uint16_t(rng());
        vc.firstTimestamp = rng();
        vc.firstPictureId = std::uint16_t(rng());
        videoSender = std::make_unique<VideoSender>(vc);
        videoReceiver = std::make_unique<VideoReceiver>(vc.encoder.codec, vc.payloadType);
    }

    const int frameMs = config.opus.frameMs;
    const int lookahead = audioSender ? audioSender->lookaheadSamples() : 0;
    Micros nextAudioCapture = frameMs * 1000;
    bool audioRunning = bool(audioSender);
    std::int64_t videoIndex = 0;
    bool videoRunning = bool(videoSender);
    Micros nextPull = 0;
    Micros nextAudioReport = 500000;
    std::vector<double> audioLatency, videoLatency;
    std::uint64_t audioSentSamples = 0;
    AudioFrame pcm, out;
    std::vector<AudioFrame> pendingHolds;
    VideoFrame picture;
    const Micros end = config.duration + config.drain;
    // Lip sync: decoded video waits for the audio captured at the same moment.
    const bool lipSync = config.lipSync && audioSender && videoSender;
    AvSync avSync;
    struct Pending {
        Micros renderAt = 0;
        VideoFrameRecord record;
        VideoFrame frame;
        Bytes encoded;
    };
    std::deque<Pending> renderQueue;
    Pacer pacer;

    for (Micros now = 0; now <= end; now += 1000) {
        if (config.script)
            config.script(now, forward);
        // Deliveries first, so that a packet due now can be played now.
        for (Bytes& d : forward.receive(now)) {
            if (d.empty())
                continue;
            std::span<const std::uint8_t> body(d.data() + 1, d.size() - 1);
            if (d[0] == std::uint8_t(Flow::audioRtp) && audioReceiver)
                audioReceiver->onPacket(body, now);
            else if (d[0] == std::uint8_t(Flow::videoRtp) && videoReceiver)
                videoReceiver->onPacket(body, now);
        }
        for (Bytes& d : backward.receive(now)) {
            if (d.empty())
                continue;
            Feedback fb;
            if (decodeFeedback(std::span<const std::uint8_t>(d.data() + 1, d.size() - 1), fb) !=
                FeedbackError::ok)
                continue;
            if (d[0] == std::uint8_t(Flow::audioFeedback) && audioSender)
                audioSender->onFeedback(fb);
            else if (d[0] == std::uint8_t(Flow::videoFeedback) && videoSender)
                for (Bytes& again : videoSender->onFeedback(fb, now))
                    pacer.enqueue(withFlow(Flow::videoRtp, again));
        }
        // Capture and send.
        if (audioRunning && now >= nextAudioCapture) {
            // A frame is captured when its last sample is: the one ending at `duration`
            // is the last.
            if (now > config.duration || !config.audio->read(audioSender->samplesPerFrame(), pcm)) {
                audioRunning = false;
            } else {
                audioCaptured[audioSender->nextTimestamp()] = now - frameMs * 1000;
                if (config.keepAudio)
                    result.audioIn.insert(result.audioIn.end(), pcm.samples.begin(),
                                          pcm.samples.end());
                audioSentSamples += std::uint64_t(pcm.sampleCount());
                if (auto packet = audioSender->sendFrame(pcm.samples))
                    forward.send(withFlow(Flow::audioRtp, *packet), now);
                nextAudioCapture += frameMs * 1000;
            }
        }
        if (videoRunning && now >= videoIndex * 1000000 / fps) {
            if (now >= config.duration || !config.video->read(picture)) {
                videoRunning = false;
            } else {
                std::uint32_t ts = videoSender->timestampFor(now);
                for (Bytes& p : videoSender->sendFrame(picture, now))
                    pacer.enqueue(withFlow(Flow::videoRtp, p));
                auto& slot = videoCaptured[ts];
                slot.first = now;
                if (config.measureQuality)
                    slot.second = std::move(picture);
                ++videoIndex;
            }
        }
        // Video leaves through the pacer at 2.5 x its bitrate, at least 1 Mbit/s: a keyframe
        // at a low bitrate is still large (audio, small, goes directly).
        if (videoSender) {
            pacer.setRate(
                std::max<std::int64_t>(std::int64_t(videoSender->bitrate()) * 5 / 2, 1000000));
            for (Bytes& p : pacer.release(now))
                forward.send(std::move(p), now);
        }
        // Audio playout: the device asks for the next frame when the last one has played.
        bool audioDone =
            !audioRunning && audioReceiver && audioReceiver->jitterBuffer().started() &&
            audioReceiver->jitterBuffer().playoutTimestamp() - std::int64_t(audioFirstTs) >=
                std::int64_t(audioSentSamples);
        if (audioReceiver && !audioDone && now >= nextPull) {
            std::int64_t ts = 0;
            auto underrunsBefore = audioReceiver->jitterBuffer().stats().underruns;
            auto kind = audioReceiver->playout(now, out, &ts);
            bool hold = audioReceiver->jitterBuffer().stats().underruns > underrunsBefore;
            if (kind == AudioPlayout::Kind::wait) {
                nextPull = now + 1000;
            } else {
                nextPull = now + Micros(out.sampleCount()) * 1000 / 48;
                auto rel = std::uint64_t(ts - std::int64_t(audioFirstTs));
                // What covers the input's time span is the output (concealment after the
                // last frame, when that one was lost, is not).
                // Concealment while waiting for packets counts once playout goes on; at the
                // end, waiting for a last packet that never comes is not output.
                bool inSpan = ts >= std::int64_t(audioFirstTs) && rel < audioSentSamples;
                if (inSpan && hold) {
                    pendingHolds.push_back(out);
                } else if (inSpan) {
                    pendingHolds.push_back(out);
                    for (const AudioFrame& frame : pendingHolds) {
                        result.audio.outputSamples += std::uint64_t(frame.sampleCount());
                        if (config.keepAudio)
                            result.audioOut.insert(result.audioOut.end(), frame.samples.begin(),
                                                   frame.samples.end());
                        if (config.audioSink)
                            config.audioSink->write(frame);
                    }
                    pendingHolds.clear();
                }
                if (kind == AudioPlayout::Kind::normal || kind == AudioPlayout::Kind::fec) {
                    auto it = audioCaptured.find(std::uint32_t(ts));
                    if (it != audioCaptured.end()) {
                        audioLatency.push_back(double(now - it->second) / 1000.0 +
                                               lookahead / 48.0);
                        // The sound captured at T leaves the decoder one look-ahead later.
                        avSync.onAudioPlayout(it->second - lookahead * 1000 / 48, now);
                    }
                }
            }
        }
        if (audioReceiver && now >= nextAudioReport) {
            nextAudioReport += 500000;
            backward.send(
                withFlow(Flow::audioFeedback, encodeFeedback(audioReceiver->makeFeedback())), now);
        }
        // Video: decode whatever is complete, send feedback.
        if (videoReceiver) {
            for (DecodedVideo& d : videoReceiver->poll(now)) {
                Pending p;
                p.record.keyframe = d.keyframe;
                p.record.capturedAt = -1;
                auto it = videoCaptured.find(std::uint32_t(d.timestamp));
                if (it != videoCaptured.end()) {
                    p.record.capturedAt = it->second.first;
                    if (config.measureQuality)
                        p.record.psnr = psnrY(it->second.second, d.frame);
                    videoCaptured.erase(videoCaptured.begin(), std::next(it));
                }
                p.renderAt = lipSync && p.record.capturedAt >= 0
                                 ? avSync.renderTime(p.record.capturedAt, now)
                                 : now;
                if (config.videoSink) {
                    p.frame = std::move(d.frame);
                    p.encoded = std::move(d.encoded);
                }
                renderQueue.push_back(std::move(p));
            }
            // Render what is due (frames stay in order: render times only grow).
            while (!renderQueue.empty() && renderQueue.front().renderAt <= now) {
                Pending& p = renderQueue.front();
                p.record.shownAt = now;
                if (p.record.capturedAt >= 0)
                    videoLatency.push_back(double(now - p.record.capturedAt) / 1000.0);
                else
                    p.record.capturedAt = 0;
                result.video.frames.push_back(p.record);
                if (config.videoSink)
                    config.videoSink->write(p.frame, p.encoded);
                renderQueue.pop_front();
            }
            if (auto fb = videoReceiver->takeFeedback(now))
                backward.send(withFlow(Flow::videoFeedback, encodeFeedback(*fb)), now);
        }
    }

    std::string err;
    if (config.audioSink && !config.audioSink->close(err))
        result.error = err;
    if (config.videoSink && !config.videoSink->close(err))
        result.error = err;
    double seconds = double(config.duration) / 1e6;
    if (audioSender) {
        auto& a = result.audio;
        a.sender = audioSender->stats();
        a.receiver = audioReceiver->stats();
        a.jitter = audioReceiver->jitterBuffer().stats();
        a.bitrateKbps = double(a.sender.bytes) * 8 / seconds / 1000;
        a.lossPercent =
            a.sender.packets
                ? 100.0 *
                      double(a.sender.packets - std::min(a.sender.packets, a.receiver.packets)) /
                      double(a.sender.packets)
                : 0;
        a.jitterMs = audioReceiver->jitterBuffer().jitterMs();
        a.latencyP50Ms = percentile(audioLatency, 0.5);
        a.latencyP95Ms = percentile(audioLatency, 0.95);
        a.inputSamples = audioSentSamples;
    }
    if (videoSender) {
        auto& v = result.video;
        v.sender = videoSender->stats();
        v.receiver = videoReceiver->stats();
        v.assembler = videoReceiver->assembler().stats();
        v.bitrateKbps = double(v.sender.bytes) * 8 / seconds / 1000;
        v.finalBitrate = videoSender->bitrate();
        auto& rec = videoReceiver->reception();
        v.lossPercent = rec.expected() ? 100.0 * double(rec.lost()) / double(rec.expected()) : 0;
        v.jitterMs = rec.jitterMs();
        v.shownPercent =
            v.sender.frames ? 100.0 * double(v.frames.size()) / double(v.sender.frames) : 0;
        if (!v.frames.empty() && config.measureQuality) {
            double sum = 0, mn = 1e9;
            for (auto& f : v.frames) {
                sum += f.psnr;
                mn = std::min(mn, f.psnr);
            }
            v.meanPsnr = sum / double(v.frames.size());
            v.minPsnr = mn;
        }
        v.latencyP50Ms = percentile(videoLatency, 0.5);
        v.latencyP95Ms = percentile(videoLatency, 0.95);
    }
    if (audioSender && videoSender)
        result.avSyncMs = result.video.latencyP50Ms - result.audio.latencyP50Ms;
    result.forward = forward.stats();
    result.backward = backward.stats();
    return result;
}

} // namespace parley::media
