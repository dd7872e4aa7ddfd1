// Package layout is the one definition of where a published version's
// objects live and how they are served from storage: the version prefix,
// the master and rendition playlist names, segment names, the rule for a
// rendition name, content types and cache headers. The worker, the backfill
// and the gateway all read it from here, so that what one writes is what the
// others look for.
//
// It imports nothing of this module: anything may depend on it, including
// transcode, which must know neither keys nor storage.
package layout

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Names of the playlists inside a version.
const (
	// Master is the master playlist's name under the version prefix.
	Master = "master.m3u8"
	// MediaPlaylist is a rendition's playlist name inside its directory.
	MediaPlaylist = "index.m3u8"
)

// Cache headers.
const (
	// Immutable is the Cache-Control of every object under a version
	// prefix: versions are never overwritten, so caches may keep them
	// forever.
	Immutable = "public, max-age=31536000, immutable"
	// Private is the Cache-Control of what carries a player's token or a
	// key (rewritten playlists, key responses): never cached by anyone.
	Private = "private, no-store"
	// PrivateImmutable is the Cache-Control of the plain objects under a
	// version prefix (storyboard sprites and track): never changing, but
	// for the player that was given the URL only, never a shared cache.
	PrivateImmutable = "private, max-age=31536000, immutable"
)

// ContentTypePlaylist is the content type of every HLS playlist.
const ContentTypePlaylist = "application/vnd.apple.mpegurl"

// contentTypes by lower-case extension. Keys (".key") are absent on
// purpose: a key is never an object.
var contentTypes = map[string]string{
	".m3u8": ContentTypePlaylist,
	".ts":   "video/mp2t", ".m4s": "video/mp4", ".mp4": "video/mp4", ".m4v": "video/mp4", ".cmfv": "video/mp4",
	".m4a": "audio/mp4", ".cmfa": "audio/mp4", ".aac": "audio/aac", ".mp3": "audio/mpeg", ".ac3": "audio/ac3",
	".ec3": "audio/eac3", ".vtt": "text/vtt", ".webvtt": "text/vtt",
	".jpg": "image/jpeg", // storyboard sprites
}

// ContentType returns the content type of an object by its extension, or
// "" for an extension we do not publish.
func ContentType(name string) string {
	return contentTypes[strings.ToLower(path.Ext(name))]
}

// VersionPrefix is where the objects of one version live. Versions are
// never overwritten, so the path includes the number.
func VersionPrefix(videoID string, version int) string {
	return fmt.Sprintf("hls/%s/v%d/", videoID, version)
}

// MasterName is the master playlist's object name under prefix.
func MasterName(prefix string) string { return prefix + Master }

// RenditionDir is the directory of a rendition under prefix, ending in "/".
func RenditionDir(prefix, rendition string) string { return prefix + rendition + "/" }

// MediaPlaylistURI is a rendition playlist's URI relative to the master.
func MediaPlaylistURI(rendition string) string { return rendition + "/" + MediaPlaylist }

// MediaPlaylistName is a rendition playlist's object name under prefix.
func MediaPlaylistName(prefix, rendition string) string { return prefix + MediaPlaylistURI(rendition) }

// RenditionFromURI returns the rendition named by a master playlist's URI,
// when the URI is a valid rendition's playlist.
func RenditionFromURI(uri string) (string, bool) {
	name, ok := strings.CutSuffix(uri, "/"+MediaPlaylist)
	if !ok || !ValidRendition(name) {
		return "", false
	}
	return name, true
}

// SegmentName is the name of segment i inside a rendition's directory; ext
// includes the dot (".ts", ".m4s").
func SegmentName(i int, ext string) string { return fmt.Sprintf("seg_%05d%s", i, ext) }

// InitName is the name of init section i inside a rendition's directory.
func InitName(i int, ext string) string { return fmt.Sprintf("init_%05d%s", i, ext) }

var renditionRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidRendition reports whether name may name a rendition: one path
// segment of ASCII letters, digits, '_' and '-', at most 64 bytes, so that
// it is safe in object names, URLs and playlists without escaping.
func ValidRendition(name string) bool { return renditionRE.MatchString(name) }

// IFramesSuffix ends the name of a video rendition's I-frame-only
// rendition (trick play): "720p" has "720p-iframes", a rendition directory
// of its own with its own index.m3u8 and segments, so that the gateway
// serves and gates it by the same route and rules as any rendition.
const IFramesSuffix = "-iframes"

// IFrameRendition is the name of rendition's I-frame-only rendition.
func IFrameRendition(rendition string) string { return rendition + IFramesSuffix }

// IFramesOf returns the video rendition whose I-frame-only rendition name
// is, when it is one.
func IFramesOf(name string) (string, bool) {
	r, ok := strings.CutSuffix(name, IFramesSuffix)
	if !ok || !ValidRendition(name) || r == "" {
		return "", false
	}
	return r, true
}
