// Copyright 2021 FerretDB Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

// Package connmetrics counts the commands that client connections execute.
//
// mongolock trim: upstream keeps these counts (and listener metrics) as
// Prometheus metrics; this copy keeps only what the serverStatus command
// reports, in plain counters, so that FerretDB does not depend on Prometheus.
package connmetrics

import (
	"maps"
	"sync"
)

// CommandCounts counts the responses to one command.
type CommandCounts struct {
	Total  int64 // all responses, successful or not
	Failed int64 // responses with an error
}

// ConnMetrics counts the responses to commands of an individual conn or a collection of conns.
//
// Its methods are safe for concurrent use.
type ConnMetrics struct {
	m        sync.Mutex
	commands map[string]CommandCounts // by command name
}

// NewConnMetrics creates connection metrics.
func NewConnMetrics() *ConnMetrics {
	return &ConnMetrics{
		commands: map[string]CommandCounts{},
	}
}

// Observe counts one response to command; failed says whether it was an error.
func (cm *ConnMetrics) Observe(command string, failed bool) {
	cm.m.Lock()
	defer cm.m.Unlock()

	c := cm.commands[command]
	c.Total++

	if failed {
		c.Failed++
	}

	cm.commands[command] = c
}

// Commands returns a copy of the counts, by command name.
func (cm *ConnMetrics) Commands() map[string]CommandCounts {
	cm.m.Lock()
	defer cm.m.Unlock()

	return maps.Clone(cm.commands)
}
