package main

import (
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// plotSeries is one tenant's task starts in one run, and its policy's rate.
type plotSeries struct {
	name   string
	starts []time.Time // sorted
	policy float64     // tokens per second
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// plotRates draws, per series, the tasks started in each wall-clock second
// since its first start, and its policy as a dashed line, into a PNG at
// path. Seconds are whole wall-clock seconds because asynq releases
// scheduled tasks by whole seconds.
func plotRates(path, title string, series []plotSeries) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the first task started"
	p.Y.Label.Text = "tasks started per second"
	p.Legend.Top = true
	for i, s := range series {
		if len(s.starts) == 0 {
			continue
		}
		col := palette[i%len(palette)]
		from := s.starts[0].Truncate(time.Second)
		last := int(s.starts[len(s.starts)-1].Sub(from) / time.Second)
		bins := make([]float64, last+1)
		for _, t := range s.starts {
			bins[int(t.Sub(from)/time.Second)]++
		}
		pts := make(plotter.XYs, len(bins))
		for b, n := range bins {
			pts[b].X, pts[b].Y = float64(b)+0.5, n
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = col
		line.Width = vg.Points(1)
		pol, err := plotter.NewLine(plotter.XYs{{X: 0, Y: s.policy}, {X: float64(last + 1), Y: s.policy}})
		if err != nil {
			return err
		}
		pol.Color = col
		pol.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line, pol)
		p.Legend.Add(s.name, line)
		p.Legend.Add("policy", pol)
	}
	p.Y.Min = 0
	top := 0.0
	for _, s := range series {
		top = max(top, s.policy)
	}
	p.Y.Max = 2.5 * top // room for the legend above the lines
	p.Legend.ThumbnailWidth = vg.Points(20)
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}
