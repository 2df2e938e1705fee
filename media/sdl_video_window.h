// `window`: shows I420 frames in an SDL2 window through a streaming IYUV texture. Built only
// with -DPARLEY_DEVICES=ON.
#pragma once

#include "media/video_io.h"

#include <cstdint>
#include <memory>
#include <string>

struct SDL_Window;
struct SDL_Renderer;
struct SDL_Texture;

namespace parley::media {

// Frames are shown at `fps` at most: a source faster than real time (the test pattern, a
// file) plays at its real speed; a camera already delivers at that rate. Closing the window
// stops the showing, not the pipeline.
class SdlVideoWindow : public VideoSink {
public:
    static std::unique_ptr<SdlVideoWindow> open(const std::string& title, int width, int height,
                                                int fps, std::string& error);
    ~SdlVideoWindow() override;
    void write(const VideoFrame& frame, std::span<const std::uint8_t> encoded) override;
    bool close(std::string& error) override;

private:
    SdlVideoWindow() = default;
    void pumpEvents();
    SDL_Window* window_ = nullptr;
    SDL_Renderer* renderer_ = nullptr;
    SDL_Texture* texture_ = nullptr;
    int textureWidth_ = 0, textureHeight_ = 0;
    int fps_ = 30;
    std::uint64_t shown_ = 0;
    std::uint64_t startMs_ = 0;
    bool closedByUser_ = false;
    bool subsystem_ = false;
    std::string error_;
};

} // namespace parley::media
