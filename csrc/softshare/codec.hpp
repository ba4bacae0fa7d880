// The entropy coder of softshare's compressed model file (docs/format.md is its
// specification), Python-free; bind_codec.cpp binds it:
//   * codec_coder.hpp: the binary arithmetic coder, its adaptive bit models,
//     mixers and binary trees;
//   * codec_stream.hpp: the header stream's adaptive bits, symbols and integers;
//   * codec_layers.hpp: the layer stream (every layer's indices), and format
//     version 3's segments, coded independently.
#pragma once

#include "softshare/codec_coder.hpp"
#include "softshare/codec_layers.hpp"
#include "softshare/codec_stream.hpp"
