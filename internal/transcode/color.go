package transcode

import "slices"

// Color is the source's colour description as ffprobe reports it
// (color_primaries, color_transfer, color_space, color_range). Every value
// is checked against names that ffmpeg's codecs, swscale and zscale all
// understand; anything else reads as "" (unspecified), so a tag written by a
// hostile file never reaches a filter graph.
type Color struct {
	Primaries string // "bt709", "bt2020", "smpte170m", ...
	Transfer  string // "bt709", "smpte2084" (PQ), "arib-std-b67" (HLG), ...
	Space     string // the YCbCr matrix: "bt709", "bt2020nc", "smpte170m", "bt470bg", ...
	Range     string // "tv" (limited) or "pc" (full)
}

var (
	knownPrimaries = []string{"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020", "smpte428", "smpte431", "smpte432"}
	knownTransfers = []string{"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "linear", "iec61966-2-1", "iec61966-2-4",
		"bt2020-10", "bt2020-12", "smpte2084", "arib-std-b67"}
	knownSpaces = []string{"bt709", "fcc", "bt470bg", "smpte170m", "smpte240m", "bt2020nc", "bt2020c"}
	knownRanges = []string{"tv", "pc"}
)

// known returns v when it is in names, else "".
func known(v string, names []string) string {
	if slices.Contains(names, v) {
		return v
	}
	return ""
}

func parseColor(s *ffStream) Color {
	return Color{
		Primaries: known(s.ColorPrimaries, knownPrimaries),
		Transfer:  known(s.ColorTransfer, knownTransfers),
		Space:     known(s.ColorSpace, knownSpaces),
		Range:     known(s.ColorRange, knownRanges),
	}
}

// HDR reports whether the transfer is one of the two HDR curves: PQ
// (SMPTE ST 2084, HDR10 and Dolby Vision's base layer) or HLG (ARIB
// STD-B67, what phones record).
func (c Color) HDR() bool { return c.Transfer == "smpte2084" || c.Transfer == "arib-std-b67" }

// ToneMap is what the HDR-to-SDR chain needs to know about the source,
// in zscale's (= ffmpeg's) names. Unknown primaries, matrix and range of an
// HDR source default to BT.2020 non-constant luminance, limited range: the
// only combination phones and HDR10 masters use.
type ToneMap struct {
	Transfer  string // "smpte2084" or "arib-std-b67"
	Primaries string
	Matrix    string
	Range     string
}

// toneMapFor returns the tone-mapping input for an HDR source, nil for SDR.
func toneMapFor(c Color) *ToneMap {
	if !c.HDR() {
		return nil
	}
	tm := &ToneMap{Transfer: c.Transfer, Primaries: c.Primaries, Matrix: c.Space, Range: c.Range}
	if tm.Primaries == "" {
		tm.Primaries = "bt2020"
	}
	if tm.Matrix == "" {
		tm.Matrix = "bt2020nc"
	}
	if tm.Range == "" {
		tm.Range = "tv"
	}
	return tm
}

func (t *ToneMap) valid() bool {
	return (t.Transfer == "smpte2084" || t.Transfer == "arib-std-b67") &&
		known(t.Primaries, knownPrimaries) != "" && known(t.Matrix, knownSpaces) != "" && known(t.Range, knownRanges) != ""
}

// swscale's in_color_matrix names for the matrices that are not BT.709.
var swsMatrices = []string{"bt601", "fcc", "smpte240m", "bt2020"}

// inMatrix returns swscale's in_color_matrix for an SDR source whose
// YCbCr matrix is not BT.709, or "" when no conversion is needed. Every
// output is tagged BT.709, so the matrix must be BT.709 too, or players
// decode the colours with the wrong coefficients (reds and greens shift).
// An untagged source gets the guess players make (mpv's rule): BT.601 for
// SD (narrower than 1280 and at most 576 lines), BT.709 above. BT.2020
// SDR is converted by matrix only; its wider primaries are not remapped.
func inMatrix(c Color, width, height int) string {
	switch c.Space {
	case "bt709":
		return ""
	case "smpte170m", "bt470bg":
		return "bt601"
	case "fcc", "smpte240m":
		return c.Space
	case "bt2020nc", "bt2020c":
		return "bt2020"
	}
	if width >= 1280 || height > 576 {
		return ""
	}
	return "bt601"
}
