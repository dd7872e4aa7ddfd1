package pipeline

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the worker's Prometheus series.
type Metrics struct {
	jobs            *prometheus.CounterVec
	jobDuration     prometheus.Histogram
	ffmpegDuration  prometheus.Histogram
	uploadedBytes   prometheus.Counter
	downloadedBytes prometheus.Counter
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := prometheus.ExponentialBuckets(1, 2, 14) // 1 s … 2.3 h
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hlsvault_jobs_total",
			Help: "Transcode job attempts by outcome (published, superseded, failed, retry, requeued, cancelled).",
		}, []string{"outcome"}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hlsvault_job_duration_seconds", Help: "Wall time of one job attempt.", Buckets: buckets,
		}),
		ffmpegDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hlsvault_ffmpeg_duration_seconds", Help: "Wall time of the ffmpeg ladder run.", Buckets: buckets,
		}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hlsvault_uploaded_bytes_total", Help: "Bytes written to blob storage (segments and playlists).",
		}),
		downloadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hlsvault_downloaded_bytes_total", Help: "Source bytes downloaded from blob storage.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.jobDuration, m.ffmpegDuration, m.uploadedBytes, m.downloadedBytes)
	}
	return m
}
