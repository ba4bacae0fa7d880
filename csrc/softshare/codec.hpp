// The entropy coder of softshare's compressed model file (docs/format.md is its
// specification), Python-free; bind_codec.cpp binds it:
//   * codec_coder.hpp: the binary arithmetic coder, its adaptive bit models,
//     mixers and binary trees;
//   * codec_stream.hpp: the header stream's adaptive bits, symbols and integers;
//   * codec_layers.hpp: the layer stream (every layer's indices);
//   * codec_rans.hpp: format version 4's coder of large parts' cells (rANS);
//   * codec_fast.hpp: what version 4's adaptive stream holds of such a part;
//   * codec_segments.hpp: format versions 3 and 4's segments, coded independently.
#pragma once

#include "softshare/codec_coder.hpp"
#include "softshare/codec_fast.hpp"
#include "softshare/codec_layers.hpp"
#include "softshare/codec_rans.hpp"
#include "softshare/codec_segments.hpp"
#include "softshare/codec_stream.hpp"
