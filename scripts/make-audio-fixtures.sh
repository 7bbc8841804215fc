#!/usr/bin/env bash
# Regenerates test/fixtures/audio/ (the committed files are what tests use; this only rebuilds them).
# Needs Debian's espeak-ng and sox:  apt-get update && apt-get install -y espeak-ng sox libsox-fmt-mp3
# Output is byte-for-byte repeatable: sox runs without dither (-D) and with a fixed noise seed (-R).
#
# Speech is synthesised at espeak-ng's native 22050 Hz, trimmed to its audible part (sox `silence`,
# −50 dBFS), then placed after exact runs of digital silence; ground-truth.json records, per valid
# file, each utterance's start/end (from the sample counts, so it is exact to one 22050 Hz sample)
# and the format facts a decoder must report. Invalid files are hand-made byte by byte.
set -euo pipefail

for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox libsox-fmt-mp3" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/test/fixtures/audio"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
rm -f "$OUT"/*.wav "$OUT"/ground-truth.json

SR=22050
SOX=(sox -D -R -V1)
GT="$WORK/ground-truth.entries"
: >"$GT"

# say NAME VOICE WPM TEXT → $WORK/NAME.wav (mono, 22050 Hz, s16, trimmed to the audible part)
say() {
  espeak-ng -v "$2" -s "$3" -w "$WORK/$1.raw.wav" "$4"
  "${SOX[@]}" "$WORK/$1.raw.wav" "$WORK/$1.wav" silence 1 1s 0.3% reverse silence 1 1s 0.3% reverse
  echo "$2|$3|$4" >"$WORK/$1.meta"
}

samples() { soxi -s "$1"; }

# silence NAME SAMPLES (format options go before -n: they set the null input's rate, which `trim` counts in)
silence() { "${SOX[@]}" -r $SR -c 1 -n -b 16 -e signed "$WORK/$1.wav" trim 0 "$2s"; }

# scene NAME TOTAL_S OFFSET_S CLIP [OFFSET_S CLIP ...] → $WORK/NAME.wav and $WORK/NAME.speech (JSON list)
scene() {
  local name=$1 total=$2
  shift 2
  local at=0 parts=() json="" i=0
  while [ $# -gt 0 ]; do
    local offset=$(awk -v s="$1" -v r=$SR 'BEGIN { printf "%d", s * r + 0.5 }') clip=$2
    shift 2
    local gap=$((offset - at))
    [ $gap -ge 0 ] || { echo "scene $name: clip $clip overlaps the previous one" >&2; exit 1; }
    silence "$name.gap$i" $gap
    parts+=("$WORK/$name.gap$i.wav" "$WORK/$clip.wav")
    local n=$(samples "$WORK/$clip.wav")
    IFS='|' read -r voice wpm text <"$WORK/$clip.meta"
    json+=$(awk -v a=$offset -v b=$((offset + n)) -v r=$SR -v v="$voice" -v w="$wpm" -v t="$text" \
      'BEGIN { printf "{ \"start_s\": %.5f, \"end_s\": %.5f, \"voice\": \"%s\", \"rate_wpm\": %d, \"text\": \"%s\" }", a / r, b / r, v, w, t }')
    json+=", "
    at=$((offset + n))
    i=$((i + 1))
  done
  local end=$(awk -v s="$total" -v r=$SR 'BEGIN { printf "%d", s * r + 0.5 }')
  [ $end -ge $at ] || { echo "scene $name: longer than $total s" >&2; exit 1; }
  silence "$name.tail" $((end - at))
  parts+=("$WORK/$name.tail.wav")
  "${SOX[@]}" "${parts[@]}" "$WORK/$name.wav"
  echo "[${json%, }]" >"$WORK/$name.speech"
}

# emit FILE KIND FORMAT EXTENSIBLE NOISE SPEECH_JSON → one ground-truth entry, facts read back from the file
emit() {
  local f="$OUT/$1"
  if [ "$2" != silence ] && sox "$f" -n stat 2>&1 | awk '/Maximum amplitude/ { exit ($3 != 0) }'; then
    echo "$1 came out silent" >&2
    exit 1
  fi
  printf '    "%s": { "kind": "%s", "format": "%s", "extensible": %s, "noise": %s, "sample_rate": %s, "channels": %s, "frames": %s, "duration_s": %s, "speech": %s },\n' \
    "$1" "$2" "$3" "$4" "$5" "$(soxi -r "$f")" "$(soxi -c "$f")" "$(soxi -s "$f")" \
    "$(awk -v n="$(soxi -s "$f")" -v r="$(soxi -r "$f")" 'BEGIN { printf "%.6f", n / r }')" "$6" >>"$GT"
}

# --- speech material -------------------------------------------------------------------------
say fox en-us 160 "The quick brown fox jumps over the lazy dog."
say detect en-us 160 "Voice activity detection finds the speech."
say hello en-us+f3 140 "Hello, this is a short test."
say rp1 en-gb-x-rp 230 "Speaking quickly, in received pronunciation."
say rp2 en-gb-x-rp 230 "Numbers: three, seven, eleven."
say slow en-us 110 "Slowly and clearly."
say scot en-gb-scotland 175 "Rain again over the hills."
say four en-us+m3 175 "Four channels of audio."
say l1 en 150 "First, the weather report for today."
say l2 en-us+f2 190 "Second, a word from the kitchen."
say l3 en-029 170 "Third, music and dancing tonight."
say l4 en-gb-scotland 125 "Fourth, the long road home."
say l5 en-us+m7 210 "Fifth, a very fast and hurried sentence to finish."
say l6 en-us+f4 160 "And finally, goodbye."

scene s_two 7 0.5 fox 4.0 detect
scene s_hello 3 0.6 hello
scene s_fast 5 0.4 rp1 3.2 rp2
scene s_slow 3 0.7 slow
scene s_scot 4 1.1 scot
scene s_four 3 0.5 four
scene s_long 30 1.0 l1 6.0 l2 10.5 l3 16.0 l4 21.0 l5 26.5 l6

"${SOX[@]}" -r $SR -c 1 -n -b 16 "$WORK/noise.wav" synth 4 whitenoise vol 0.02
"${SOX[@]}" -m -v 1 "$WORK/s_scot.wav" -v 1 "$WORK/noise.wav" "$WORK/s_scot_noise.wav"

# --- valid files -----------------------------------------------------------------------------
"${SOX[@]}" "$WORK/s_two.wav" -t wavpcm -r 16000 -b 16 "$OUT/speech_16k_mono_s16.wav"
emit speech_16k_mono_s16.wav speech pcm_s16le false false "$(cat "$WORK/s_two.speech")"

"${SOX[@]}" "$WORK/s_fast.wav" -t wavpcm -r 22050 -b 16 "$OUT/speech_22k_mono_s16_fast.wav"
emit speech_22k_mono_s16_fast.wav speech pcm_s16le false false "$(cat "$WORK/s_fast.speech")"

"${SOX[@]}" "$WORK/s_slow.wav" -t wavpcm -r 44100 -b 16 "$OUT/speech_44k_stereo_s16.wav" remix 1 1v0.5
emit speech_44k_stereo_s16.wav speech pcm_s16le false false "$(cat "$WORK/s_slow.speech")"

"${SOX[@]}" "$WORK/s_scot_noise.wav" -t wavpcm -r 48000 -b 16 "$OUT/speech_48k_mono_s16_noise.wav"
emit speech_48k_mono_s16_noise.wav speech pcm_s16le false true "$(cat "$WORK/s_scot.speech")"

# sox writes WAVE_FORMAT_EXTENSIBLE for more than two channels.
"${SOX[@]}" "$WORK/s_four.wav" -t wav -r 16000 -b 16 "$OUT/speech_16k_4ch_s16.wav" remix 1 1v0.5 0 1v0.25
emit speech_16k_4ch_s16.wav speech pcm_s16le true false "$(cat "$WORK/s_four.speech")"

"${SOX[@]}" "$WORK/s_long.wav" -t wavpcm -r 16000 -b 16 "$OUT/speech_16k_mono_s16_long.wav"
emit speech_16k_mono_s16_long.wav speech pcm_s16le false false "$(cat "$WORK/s_long.speech")"

"${SOX[@]}" "$WORK/s_hello.wav" -t wavpcm -r 16000 -b 16 "$OUT/clipped_16k_mono_s16.wav" gain 30
emit clipped_16k_mono_s16.wav clipped pcm_s16le false false "$(cat "$WORK/s_hello.speech")"

# One 3 s utterance at 8 kHz in every sample format; all decode to the s16 file's values (± its quantisation).
BASE="$OUT/fmt_8k_mono_s16.wav"
"${SOX[@]}" "$WORK/s_hello.wav" -t wavpcm -r 8000 -b 16 "$BASE"
emit fmt_8k_mono_s16.wav speech pcm_s16le false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wavpcm -e unsigned -b 8 "$OUT/fmt_8k_mono_u8.wav"
emit fmt_8k_mono_u8.wav speech pcm_u8 false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wavpcm -b 24 "$OUT/fmt_8k_mono_s24.wav"
emit fmt_8k_mono_s24.wav speech pcm_s24le false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wavpcm -b 32 "$OUT/fmt_8k_mono_s32.wav"
emit fmt_8k_mono_s32.wav speech pcm_s32le false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wavpcm -e float -b 32 "$OUT/fmt_8k_mono_f32.wav"
emit fmt_8k_mono_f32.wav speech pcm_f32le false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wavpcm -e float -b 64 "$OUT/fmt_8k_mono_f64.wav"
emit fmt_8k_mono_f64.wav speech pcm_f64le false false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wav -b 24 "$OUT/fmt_8k_mono_s24_extensible.wav"
emit fmt_8k_mono_s24_extensible.wav speech pcm_s24le true false "$(cat "$WORK/s_hello.speech")"
"${SOX[@]}" "$BASE" -t wav -B -b 16 "$OUT/fmt_8k_mono_s16_rifx.wav"
emit fmt_8k_mono_s16_rifx.wav speech pcm_s16be false false "$(cat "$WORK/s_hello.speech")"

"${SOX[@]}" -r 16000 -c 1 -n -b 16 -t wavpcm "$OUT/silence_16k_mono_s16.wav" trim 0 2
emit silence_16k_mono_s16.wav silence pcm_s16le false false "[]"
"${SOX[@]}" -r 16000 -c 1 -n -b 16 -t wavpcm "$OUT/noise_16k_mono_s16.wav" synth 2 whitenoise vol 0.02
emit noise_16k_mono_s16.wav noise pcm_s16le false true "[]"
"${SOX[@]}" -r 16000 -c 1 -n -b 16 -t wavpcm "$OUT/tone_16k_mono_s16_1khz.wav" synth 2 sine 1000 vol 0.5
emit tone_16k_mono_s16_1khz.wav tone pcm_s16le false false "[]"

# --- invalid files ---------------------------------------------------------------------------
byte() { printf "\\x$(printf %02x $(($1 & 255)))"; }
le16() { byte "$1"; byte $(($1 >> 8)); }
le32() { le16 $(($1 & 65535)); le16 $((($1 >> 16) & 65535)); }
# wav_header TAG CHANNELS RATE BITS BLOCK_ALIGN DATA_BYTES
wav_header() {
  printf 'RIFF'; le32 $((36 + $6)); printf 'WAVEfmt '; le32 16
  le16 "$1"; le16 "$2"; le32 "$3"; le32 $(($3 * $5)); le16 "$5"; le16 "$4"
  printf 'data'; le32 "$6"
}
zeros() { head -c "$1" /dev/zero; }
INVALID="$WORK/invalid.entries"
: >"$INVALID"
# invalid NAME ERROR_CLASS MESSAGE_FRAGMENT
invalid() { printf '    "%s": { "error": "%s", "message": "%s" },\n' "$1" "$2" "$3" >>"$INVALID"; }

: >"$OUT/invalid_empty.wav"
invalid invalid_empty.wav ValidationError "empty"
head -c 30 "$BASE" >"$OUT/invalid_truncated_header.wav"
invalid invalid_truncated_header.wav ValidationError "truncated"
head -c 1044 "$BASE" >"$OUT/invalid_header_lies.wav"
invalid invalid_header_lies.wav ValidationError "data chunk declares"
head -c 4096 /dev/zero | openssl enc -aes-128-ctr -nosalt -K 766972656f766972656f766972656f00 -iv 0 2>/dev/null | head -c 2048 >"$OUT/invalid_random_bytes.wav"
invalid invalid_random_bytes.wav UnsupportedMediaTypeError "not a recognised audio container"
{ wav_header 1 0 16000 16 0 64; zeros 64; } >"$OUT/invalid_zero_channels.wav"
invalid invalid_zero_channels.wav ValidationError "0 channels"
{ wav_header 1 1 3000000000 16 2 64; zeros 64; } >"$OUT/invalid_absurd_rate.wav"
invalid invalid_absurd_rate.wav ValidationError "3000000000 Hz"
{ wav_header 1 1 16000 16 3 64; zeros 64; } >"$OUT/invalid_block_align.wav"
invalid invalid_block_align.wav ValidationError "block align"
{ wav_header 1 1 16000 12 2 64; zeros 64; } >"$OUT/invalid_12bit.wav"
invalid invalid_12bit.wav ValidationError "12-bit integer PCM"
{ wav_header 3 1 16000 16 2 64; zeros 64; } >"$OUT/invalid_float16.wav"
invalid invalid_float16.wav ValidationError "16-bit float"
{ printf 'RIFF'; le32 40; printf 'WAVEfmt '; le32 16; le16 1; le16 1; le32 16000; le32 32000; le16 2; le16 16; printf 'LIST'; le32 4; printf 'INFO'; } >"$OUT/invalid_no_data.wav"
invalid invalid_no_data.wav ValidationError "no data chunk"
"${SOX[@]}" "$BASE" -t wav -e a-law "$OUT/invalid_alaw.wav"
invalid invalid_alaw.wav UnsupportedMediaTypeError "A-law"
"${SOX[@]}" "$WORK/hello.wav" -t mp3 "$OUT/invalid_mp3_named.wav"
invalid invalid_mp3_named.wav UnsupportedMediaTypeError "MP3 audio is not supported"
# An ID3v2 tag then one MPEG-1 Layer III frame header (128 kb/s, 44.1 kHz), as most MP3 files start.
{ printf 'ID3\x04\x00\x00\x00\x00\x00\x00'; printf '\xff\xfb\x90\x64'; zeros 413; } >"$OUT/invalid_mp3_id3_named.wav"
invalid invalid_mp3_id3_named.wav UnsupportedMediaTypeError "MP3 audio is not supported"
"${SOX[@]}" "$WORK/hello.wav" -t flac "$OUT/invalid_flac_named.wav"
invalid invalid_flac_named.wav UnsupportedMediaTypeError "FLAC audio is not supported"
# Vorbis encoders pick a random stream serial, so the Ogg page is hand-made to stay repeatable.
{ printf 'OggS\x00\x02'; zeros 8; printf '\x76\x69\x72\x65'; zeros 8; printf '\x01\x1e\x01vorbis'; zeros 23; } >"$OUT/invalid_ogg_named.wav"
invalid invalid_ogg_named.wav UnsupportedMediaTypeError "OGG audio is not supported"

{
  echo '{'
  echo '  "generator": "scripts/make-audio-fixtures.sh",'
  echo '  "note": "speech start_s/end_s are where the trimmed espeak-ng clip was placed (exact at 22050 Hz before conversion)",'
  echo '  "valid": {'
  sed '$ s/,$//' "$GT"
  echo '  },'
  echo '  "invalid": {'
  sed '$ s/,$//' "$INVALID"
  echo '  }'
  echo '}'
} >"$OUT/ground-truth.json"

du -sh "$OUT"
