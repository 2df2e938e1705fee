# Media engine tests, included by tests/CMakeLists.txt when target parley_media exists.

file(GLOB UNIT_MEDIA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/unit/media/*.cpp)
add_executable(unit_media ${UNIT_MEDIA_SOURCES})
target_link_libraries(unit_media PRIVATE parley_catch_main parley_media)
# Where the external validators (vpxdec, soxi, ffprobe) may write their inputs.
target_compile_definitions(unit_media PRIVATE PARLEY_MEDIA_TMP="${CMAKE_CURRENT_BINARY_DIR}")
catch_discover_tests(unit_media EXTRA_ARGS --warn NoTests TEST_PREFIX "unit.media." PROPERTIES LABELS unit TIMEOUT 300)

# Fuzz targets of the media decoders: libFuzzer with PARLEY_FUZZ, else a corpus replay test.
file(GLOB MEDIA_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/media/fuzz_*.cpp)
parley_add_fuzz_targets(SOURCES ${MEDIA_FUZZ_SOURCES} LIBS parley_media)

# Benchmarks: executables that print figures (run by hand or contrib/bench.sh).
file(GLOB MEDIA_BENCH_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/bench/media/bench_*.cpp)
foreach(src ${MEDIA_BENCH_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE parley_media parley_flags)
endforeach()

# The `parley media-check` command, as a user runs it.
if(TARGET parley)
    add_test(NAME unit.media.cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/unit/media/test_media_check.sh
                                         $<TARGET_FILE:parley>)
    set_tests_properties(unit.media.cli PROPERTIES LABELS unit TIMEOUT 120)
endif()
