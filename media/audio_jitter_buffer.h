// The adaptive audio jitter buffer: RTP packets in (any order, duplicated, late), one
// playout decision out each time the audio device wants the next frame. Sans-IO: the caller
// passes the time; the caller's decoder acts on the decision (decode, FEC, PLC).
#pragma once

#include "media/media_types.h"
#include "media/rtp_packet.h"

#include <cstdint>
#include <deque>
#include <map>

namespace parley::media {

struct AudioJitterConfig {
    int minDelayMs = 20;  // never target less than this buffered ahead of playout
    int maxDelayMs = 300; // never target more
    int maxPackets = 500; // what a flood can make it hold
    // After a loss, keep one more frame buffered for this long, so that the next packet is
    // usually there to recover a lost one from its FEC data.
    Micros lossMemory = 10000000;
};

struct AudioPlayout {
    enum class Kind {
        wait,    // not started yet: play nothing (the device plays silence)
        normal,  // decode `payload`
        fec,     // decode the previous frame from `payload`'s in-band FEC data
        conceal, // packet loss concealment
        dtx,     // sender was silent (discontinuous transmission): comfort noise/PLC
    };
    Kind kind = Kind::wait;
    Bytes payload;
    int samples = 0;            // samples per channel to produce
    std::int64_t timestamp = 0; // unwrapped RTP timestamp of the first sample
};

struct AudioJitterStats {
    std::uint64_t inserted = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t late = 0;      // arrived after their playout time
    std::uint64_t normal = 0;    // frames played from their own packet
    std::uint64_t fec = 0;       // frames recovered from the next packet's FEC
    std::uint64_t concealed = 0; // frames of PLC for lost packets
    std::uint64_t underruns = 0; // frames of PLC because nothing had arrived (adds delay)
    std::uint64_t dtx = 0;       // frames the sender did not send (silence)
    std::uint64_t dropped = 0;   // frames discarded to shrink an excess delay
    double delaySumMs = 0;       // sum of buffered milliseconds at each pull
    std::uint64_t pulls = 0;
    double meanDelayMs() const { return pulls ? delaySumMs / double(pulls) : 0; }
};

class AudioJitterBuffer {
public:
    enum class InsertResult { ok, duplicate, late, full, badSamples };

    explicit AudioJitterBuffer(AudioJitterConfig config = {});

    // `samples` is the packet's duration (samples per channel at 48 kHz).
    InsertResult insert(std::uint16_t sequence, std::uint32_t timestamp, Bytes payload, int samples,
                        Micros now);
    // The next frame to play, called when the device needs it.
    AudioPlayout pull(Micros now);

    const AudioJitterStats& stats() const { return stats_; }
    // RFC 3550 interarrival jitter, in milliseconds.
    double jitterMs() const { return jitterMs_; }
    int targetDelayMs() const;
    // Audio held ahead of the playout cursor, in milliseconds.
    int bufferedMs() const;
    bool started() const { return started_; }
    // Unwrapped RTP timestamp of the next sample to play (once started).
    std::int64_t playoutTimestamp() const { return cursor_; }

private:
    struct Entry {
        std::int64_t sequence;
        Bytes payload;
        int samples;
    };
    AudioJitterConfig config_;
    SequenceUnwrapper seqUnwrap_;
    TimestampUnwrapper tsUnwrap_;
    std::map<std::int64_t, Entry> packets_; // by unwrapped timestamp
    bool started_ = false;
    std::int64_t cursor_ = 0;        // unwrapped timestamp of the next sample to play
    std::int64_t lastSequence_ = -1; // of the last packet played
    int lastSamples_ = 960;
    std::int64_t debt_ = 0; // samples concealed without advancing the cursor
    std::int64_t highestSequence_ = -1;
    Micros now_ = 0;
    Micros lossSeenAt_ = -1; // when a sequence gap last showed up
    // Interarrival jitter state.
    bool haveTransit_ = false;
    double lastTransitMs_ = 0;
    double jitterMs_ = 0;
    std::deque<int> recentBuffered_; // buffered ms at recent pulls, for the shrink rule
    AudioJitterStats stats_;
};

} // namespace parley::media
