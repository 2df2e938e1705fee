#include "media/sdl_video_window.h"

#define SDL_MAIN_HANDLED
#include <SDL.h>

namespace parley::media {

std::unique_ptr<SdlVideoWindow> SdlVideoWindow::open(const std::string& title, int width,
                                                     int height, int fps, std::string& error) {
    std::unique_ptr<SdlVideoWindow> s(new SdlVideoWindow);
    if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0) {
        error = std::string("cannot open a window: no video driver (") + SDL_GetError() +
                "); is DISPLAY or WAYLAND_DISPLAY set? SDL_VIDEODRIVER=x11 or wayland "
                "chooses one";
        return nullptr;
    }
    s->subsystem_ = true;
    s->fps_ = fps > 0 ? fps : 30;
    s->window_ = SDL_CreateWindow(title.c_str(), SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED,
                                  width, height, SDL_WINDOW_RESIZABLE);
    if (!s->window_) {
        error = std::string("cannot open a window: ") + SDL_GetError();
        return nullptr;
    }
    s->renderer_ = SDL_CreateRenderer(s->window_, -1, 0);
    if (!s->renderer_) {
        error = std::string("cannot open a window: no renderer (") + SDL_GetError() + ")";
        return nullptr;
    }
    return s;
}

SdlVideoWindow::~SdlVideoWindow() {
    std::string ignored;
    close(ignored);
    if (subsystem_)
        SDL_QuitSubSystem(SDL_INIT_VIDEO);
}

void SdlVideoWindow::pumpEvents() {
    SDL_Event e;
    while (SDL_PollEvent(&e)) {
        if (e.type == SDL_QUIT ||
            (e.type == SDL_WINDOWEVENT && e.window.event == SDL_WINDOWEVENT_CLOSE)) {
            closedByUser_ = true;
            SDL_HideWindow(window_);
        }
    }
}

void SdlVideoWindow::write(const VideoFrame& frame, std::span<const std::uint8_t>) {
    if (!renderer_ || !error_.empty())
        return;
    pumpEvents();
    if (closedByUser_ || frame.width <= 0 || frame.height <= 0 ||
        frame.data.size() < VideoFrame::sizeFor(frame.width, frame.height))
        return;
    if (!texture_ || textureWidth_ != frame.width || textureHeight_ != frame.height) {
        if (texture_)
            SDL_DestroyTexture(texture_);
        texture_ = SDL_CreateTexture(renderer_, SDL_PIXELFORMAT_IYUV, SDL_TEXTUREACCESS_STREAMING,
                                     frame.width, frame.height);
        if (!texture_) {
            error_ = std::string("showing video failed: ") + SDL_GetError();
            return;
        }
        textureWidth_ = frame.width;
        textureHeight_ = frame.height;
        // Keeps the aspect ratio when the window is resized (letterboxing).
        SDL_RenderSetLogicalSize(renderer_, frame.width, frame.height);
    }
    // Wait for this frame's time, so a source faster than real time plays at its speed.
    std::uint64_t now = SDL_GetTicks64();
    if (shown_ == 0)
        startMs_ = now;
    std::uint64_t due = startMs_ + shown_ * 1000 / std::uint64_t(fps_);
    if (due > now && due - now < 1000)
        SDL_Delay(std::uint32_t(due - now));
    const int cw = (frame.width + 1) / 2, ch = (frame.height + 1) / 2;
    const std::uint8_t* y = frame.data.data();
    const std::uint8_t* u = y + std::size_t(frame.width) * frame.height;
    const std::uint8_t* v = u + std::size_t(cw) * ch;
    if (SDL_UpdateYUVTexture(texture_, nullptr, y, frame.width, u, cw, v, cw) != 0 ||
        SDL_RenderClear(renderer_) != 0 || SDL_RenderCopy(renderer_, texture_, nullptr, nullptr)) {
        error_ = std::string("showing video failed: ") + SDL_GetError();
        return;
    }
    SDL_RenderPresent(renderer_);
    ++shown_;
}

bool SdlVideoWindow::close(std::string& error) {
    if (texture_)
        SDL_DestroyTexture(texture_);
    if (renderer_)
        SDL_DestroyRenderer(renderer_);
    if (window_)
        SDL_DestroyWindow(window_);
    texture_ = nullptr;
    renderer_ = nullptr;
    window_ = nullptr;
    if (!error_.empty())
        error = error_;
    return error_.empty();
}

} // namespace parley::media
