//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/runner"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack/resolver"
	"github.com/spf13/cobra"
)

func newPsCommand() *cobra.Command {
	var all, quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [--no-trunc] [--filter KEY=VALUE]... [--format TEMPLATE]",
		Short: "List sandboxes",
		Long: `List sandboxes, newest first, in Docker's columns. IMAGE is the command's
program (there is no image). --format takes a Go template with Docker's
fields (.ID .Image .Command .CreatedAt .RunningFor .Ports .State .Status
.Names .Networks) and .IPAddresses; "table" heads the columns, {{json .}}
prints a row as JSON. --filter: name=, network=, status= (running,
exited), publish=PORT[-END][/PROTO] (a published container port).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			match, err := psFilter(filters)
			if err != nil {
				return err
			}
			reg, err := openRegistry()
			if err != nil {
				return err
			}
			recs, err := reg.List()
			if err != nil {
				return err
			}
			slices.SortStableFunc(recs, func(a, b registry.Record) int { return b.Created.Compare(a.Created) })
			var rows []psRow
			for _, r := range recs {
				if (r.State == registry.Running || all) && match(r) {
					rows = append(rows, newPsRow(r, !noTrunc))
				}
			}
			switch {
			case quiet:
				format = "{{.ID}}"
			case format == "":
				format = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
			}
			return writeFormatted(os.Stdout, format, psHeader, rows)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&all, "all", "a", false, "also exited sandboxes")
	fs.BoolVarP(&quiet, "quiet", "q", false, "only ids")
	fs.BoolVar(&noTrunc, "no-trunc", false, "full ids and commands")
	fs.StringVar(&format, "format", "", "a Go template per sandbox (see above)")
	stringListVarP(fs, &filters, "filter", "f", "name=, network=, status= or publish= (repeatable; all must match)")
	return cmd
}

// psRow is one line of ps, with Docker's field names for --format.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Names, Networks, IPAddresses string
	// Docker's placeholders for what a sandbox has none of (no image
	// layer, labels, mounts or volumes), so that its --format strings run.
	Size, Labels, Mounts, LocalVolumes string
}

// Label is Docker's {{.Label "KEY"}}: a sandbox has no labels.
func (psRow) Label(string) string { return "" }

var psHeader = psRow{
	ID: "CONTAINER ID", Image: "IMAGE", Command: "COMMAND", CreatedAt: "CREATED AT", RunningFor: "CREATED",
	Ports: "PORTS", State: "STATE", Status: "STATUS", Names: "NAMES", Networks: "NETWORKS", IPAddresses: "IP ADDRESSES",
	Size: "SIZE", Labels: "LABELS", Mounts: "MOUNTS", LocalVolumes: "LOCAL VOLUMES",
}

func newPsRow(r registry.Record, trunc bool) psRow {
	row := psRow{
		ID: r.ID, Command: strings.Join(r.Command, " "),
		CreatedAt:  r.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: units.HumanDuration(time.Since(r.Created)) + " ago",
		Ports:      forward.FormatPorts(r.Ports), State: r.State, Status: status(r), Names: r.Name,
		Size: "0B", LocalVolumes: "0",
	}
	row.Image = psRowImage(r)
	if trunc {
		row.ID = r.ShortID()
		row.Command = ellipsis(row.Command, 20)
	}
	row.Command = strconv.Quote(row.Command)
	var nets, ips []string
	for _, ep := range endpoints(r) {
		nets = append(nets, ep.Network)
		if ep.IP.IsValid() {
			ips = append(ips, ep.IP.String())
		}
	}
	row.Networks, row.IPAddresses = strings.Join(nets, ","), strings.Join(ips, ",")
	return row
}

// psRowImage stands for Docker's image: the command's program.
func psRowImage(r registry.Record) string {
	if len(r.Command) == 0 {
		return ""
	}
	return filepath.Base(r.Command[0])
}

// ellipsis cuts s to n characters, the last one an ellipsis, as Docker's
// COMMAND column does.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// psFilter is the conjunction of ps's --filter KEY=VALUE terms.
func psFilter(terms []string) (func(registry.Record) bool, error) {
	var tests []func(registry.Record) bool
	for _, t := range terms {
		k, v, ok := strings.Cut(t, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("invalid --filter %q: want KEY=VALUE (name, network, status, publish)", t)
		}
		switch k {
		case "name":
			tests = append(tests, func(r registry.Record) bool { return strings.Contains(r.Name, v) })
		case "network":
			tests = append(tests, func(r registry.Record) bool {
				return slices.ContainsFunc(endpoints(r), func(e registry.Endpoint) bool {
					return e.Network == v || (e.NetworkID != "" && strings.HasPrefix(e.NetworkID, v))
				})
			})
		case "status":
			if v != registry.Running && v != registry.Exited {
				return nil, fmt.Errorf("invalid --filter status=%s: want running or exited", v)
			}
			tests = append(tests, func(r registry.Record) bool { return r.State == v })
		case "publish":
			spec, proto, _ := strings.Cut(v, "/")
			lo, hi, err := portRange(spec)
			if err != nil || (proto != "" && proto != string(forward.TCP) && proto != string(forward.UDP)) {
				return nil, fmt.Errorf("invalid --filter publish=%s: want PORT[-END][/tcp|/udp]", v)
			}
			tests = append(tests, func(r registry.Record) bool {
				return slices.ContainsFunc(r.Ports, func(m forward.Mapping) bool {
					return m.ContainerPort >= lo && m.ContainerPort <= hi && (proto == "" || string(m.Proto) == proto)
				})
			})
		default:
			return nil, fmt.Errorf("invalid --filter %q: the keys are name, network, status and publish", t)
		}
	}
	return func(r registry.Record) bool {
		for _, test := range tests {
			if !test(r) {
				return false
			}
		}
		return true
	}, nil
}

func portRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(a, 10, 16)
	if err != nil || l == 0 {
		return 0, 0, fmt.Errorf("bad port %q", a)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(b, 10, 16); err != nil || h < l {
			return 0, 0, fmt.Errorf("bad port range %q", s)
		}
	}
	return uint16(l), uint16(h), nil
}

// status is Docker's STATUS column.
func status(r registry.Record) string {
	if r.State == registry.Running {
		return "Up " + units.HumanDuration(time.Since(r.Created))
	}
	return fmt.Sprintf("Exited (%d) %s ago", r.ExitCode, units.HumanDuration(time.Since(r.Finished)))
}

// sandboxView is `inspect` output, in the shape of Docker's
// ContainerJSON for the fields that apply (the same names and types, so
// that a Docker client library's types decode it).
type sandboxView struct {
	ID              string          `json:"Id"`
	Created         string          `json:"Created"`
	Path            string          `json:"Path"`
	Args            []string        `json:"Args"`
	State           stateView       `json:"State"`
	Name            string          `json:"Name"`
	LogPath         string          `json:"LogPath"`
	HostConfig      hostConfigView  `json:"HostConfig"`
	Config          configView      `json:"Config"`
	NetworkSettings networkSettings `json:"NetworkSettings"`
}

type stateView struct {
	Status     string `json:"Status"`
	Running    bool   `json:"Running"`
	Pid        int    `json:"Pid"`
	ExitCode   int    `json:"ExitCode"`
	StartedAt  string `json:"StartedAt"`
	FinishedAt string `json:"FinishedAt"`
}

type hostConfigView struct {
	NetworkMode  string                `json:"NetworkMode"`
	PortBindings map[string][]portView `json:"PortBindings"`
	Links        []string              `json:"Links"`
	AutoRemove   bool                  `json:"AutoRemove"`
}

type configView struct {
	Hostname string   `json:"Hostname"`
	Env      []string `json:"Env"`
	Cmd      []string `json:"Cmd"`
	Image    string   `json:"Image"`
}

// networkSettings: the top-level addresses are the default bridge's, as
// Docker fills them (empty on any other network).
type networkSettings struct {
	Bridge                 string                  `json:"Bridge"`
	SandboxID              string                  `json:"SandboxID"`
	SandboxKey             string                  `json:"SandboxKey"`
	Ports                  map[string][]portView   `json:"Ports"`
	HairpinMode            bool                    `json:"HairpinMode"`
	LinkLocalIPv6Address   string                  `json:"LinkLocalIPv6Address"`
	LinkLocalIPv6PrefixLen int                     `json:"LinkLocalIPv6PrefixLen"`
	SecondaryIPAddresses   []addressView           `json:"SecondaryIPAddresses"`
	SecondaryIPv6Addresses []addressView           `json:"SecondaryIPv6Addresses"`
	EndpointID             string                  `json:"EndpointID"`
	Gateway                string                  `json:"Gateway"`
	GlobalIPv6Address      string                  `json:"GlobalIPv6Address"`
	GlobalIPv6PrefixLen    int                     `json:"GlobalIPv6PrefixLen"`
	IPAddress              string                  `json:"IPAddress"`
	IPPrefixLen            int                     `json:"IPPrefixLen"`
	IPv6Gateway            string                  `json:"IPv6Gateway"`
	MacAddress             string                  `json:"MacAddress"`
	Networks               map[string]endpointView `json:"Networks"`
}

type endpointView struct {
	IPAMConfig          *ipamConfigView   `json:"IPAMConfig"`
	Links               []string          `json:"Links"`
	Aliases             []string          `json:"Aliases"`
	NetworkID           string            `json:"NetworkID"`
	EndpointID          string            `json:"EndpointID"`
	Gateway             string            `json:"Gateway"`
	IPAddress           string            `json:"IPAddress"`
	IPPrefixLen         int               `json:"IPPrefixLen"`
	IPv6Gateway         string            `json:"IPv6Gateway"`
	GlobalIPv6Address   string            `json:"GlobalIPv6Address"`
	GlobalIPv6PrefixLen int               `json:"GlobalIPv6PrefixLen"`
	MacAddress          string            `json:"MacAddress"`
	DriverOpts          map[string]string `json:"DriverOpts"`
}

type ipamConfigView struct {
	IPv4Address string `json:"IPv4Address,omitempty"`
	IPv6Address string `json:"IPv6Address,omitempty"`
}

// addressView is Docker's network.Address, the element type of the
// (never filled) SecondaryIPAddresses lists.
type addressView struct {
	Addr      string `json:"Addr"`
	PrefixLen int    `json:"PrefixLen"`
}

type portView struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// dockerTime is Docker's timestamp: RFC 3339 with nanoseconds, UTC; the
// zero time as Docker writes it for a container still running.
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func view(r registry.Record) sandboxView {
	v := sandboxView{ID: r.ID, Name: "/" + r.Name, Created: dockerTime(r.Created), LogPath: r.LogPath}
	if len(r.Command) > 0 {
		v.Path, v.Args = r.Command[0], r.Command[1:]
	}
	v.State = stateView{Status: r.State, Running: r.State == registry.Running, ExitCode: r.ExitCode,
		StartedAt: dockerTime(r.Created), FinishedAt: dockerTime(r.Finished)}
	if v.State.Running {
		v.State.Pid = r.AgentPid
	}
	env := r.Env
	if env == nil {
		env = []string{}
	}
	v.Config = configView{Hostname: r.Hostname, Env: env, Cmd: r.Command, Image: psRowImage(r)}
	v.HostConfig = hostConfigView{NetworkMode: r.Network, AutoRemove: r.AutoRemove, PortBindings: map[string][]portView{}}
	for _, m := range r.Ports {
		key := fmt.Sprintf("%d/%s", m.ContainerPort, m.Proto)
		hostIP := ""
		if m.HostIP.IsValid() {
			hostIP = m.HostIP.String()
		}
		v.HostConfig.PortBindings[key] = append(v.HostConfig.PortBindings[key], portView{HostIP: hostIP, HostPort: fmt.Sprint(m.HostPort)})
	}
	v.NetworkSettings.Networks = map[string]endpointView{}
	for i, e := range endpoints(r) {
		ep := endpointView{NetworkID: e.NetworkID, IPPrefixLen: e.Prefix, MacAddress: e.MAC}
		if e.NetworkID != "" {
			ep.EndpointID = endpointID(e.NetworkID, r.ID)
		}
		userDefined := e.Network != netstore.BridgeName && e.NetworkID != ""
		if userDefined {
			// On a user-defined network Docker lists the --network-alias
			// names, then the short id.
			ep.Aliases = append(append([]string{}, e.Aliases...), r.ShortID())
		}
		switch {
		case i > 0:
		case userDefined:
			// Docker keeps a user-defined network's --link in that
			// endpoint, as NAME or NAME:ALIAS; HostConfig.Links is
			// the default bridge's legacy form only.
			ep.Links = endpointLinks(r.Links)
		default:
			v.HostConfig.Links = r.Links
		}
		if e.IP.IsValid() {
			ep.IPAddress, ep.Gateway = e.IP.String(), e.Gateway.String()
		}
		if e.IP6.IsValid() {
			ep.GlobalIPv6Address, ep.GlobalIPv6PrefixLen, ep.IPv6Gateway = e.IP6.String(), e.Prefix6, e.Gateway6.String()
		}
		if i == 0 && (r.StaticIP && e.IP.IsValid() || r.StaticIP6 && e.IP6.IsValid()) {
			ep.IPAMConfig = &ipamConfigView{}
			if r.StaticIP {
				ep.IPAMConfig.IPv4Address = e.IP.String()
			}
			if r.StaticIP6 {
				ep.IPAMConfig.IPv6Address = e.IP6.String()
			}
		}
		if e.Network == netstore.BridgeName {
			ns := &v.NetworkSettings
			ns.IPAddress, ns.IPPrefixLen, ns.Gateway, ns.MacAddress, ns.EndpointID = ep.IPAddress, ep.IPPrefixLen, ep.Gateway, ep.MacAddress, ep.EndpointID
			ns.GlobalIPv6Address, ns.GlobalIPv6PrefixLen, ns.IPv6Gateway = ep.GlobalIPv6Address, ep.GlobalIPv6PrefixLen, ep.IPv6Gateway
		}
		v.NetworkSettings.Networks[e.Network] = ep
	}
	v.NetworkSettings.Ports = map[string][]portView{}
	for _, m := range forward.Bindings(r.Ports) {
		key := fmt.Sprintf("%d/%s", m.ContainerPort, m.Proto)
		v.NetworkSettings.Ports[key] = append(v.NetworkSettings.Ports[key], portView{HostIP: m.HostIP.String(), HostPort: fmt.Sprint(m.HostPort)})
	}
	return v
}

// endpointLinks turns the record's legacy links (/NAME:/SELF/ALIAS) into
// the form Docker lists in a user-defined network's endpoint: NAME when the
// alias is the name, NAME:ALIAS otherwise.
func endpointLinks(legacy []string) []string {
	var out []string
	for _, l := range legacy {
		target, self, ok := strings.Cut(l, ":")
		name := strings.TrimPrefix(target, "/")
		alias := self[strings.LastIndexByte(self, '/')+1:]
		if !ok || alias == name {
			out = append(out, name)
			continue
		}
		out = append(out, name+":"+alias)
	}
	return out
}

func newInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [-f TEMPLATE] SANDBOX...",
		Short: "Show sandboxes as JSON, or through a Go template (-f '{{.NetworkSettings.IPAddress}}')",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := openRegistry()
			if err != nil {
				return err
			}
			var out []sandboxView
			for _, ref := range args {
				r, err := reg.Get(ref)
				if err != nil {
					return err
				}
				out = append(out, view(r))
			}
			return writeInspect(os.Stdout, format, out)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "a Go template run on each object, with Docker's field names")
	return cmd
}

// writeInspect prints views as Docker's inspect does: an indented JSON
// array, or format run on each object. As Docker's CLI falls back to, the
// template sees the JSON object itself, so that every field is named as
// in the JSON ({{.Id}}, {{.NetworkSettings.Networks}}, {{json .Config}}).
func writeInspect[T any](w io.Writer, format string, views []T) error {
	if format == "" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "    ")
		return enc.Encode(views)
	}
	var objects []map[string]any
	b, err := json.Marshal(views)
	if err == nil {
		err = json.Unmarshal(b, &objects)
	}
	if err != nil {
		return err
	}
	return writeFormatted(w, format, nil, objects)
}

func newStopCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] SANDBOX...",
		Short: "Stop sandboxes: SIGTERM, then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachSandbox(args, func(_ *registry.Registry, r registry.Record) error {
				if r.State == registry.Running {
					stop(r, time.Duration(timeout)*time.Second)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing")
	return cmd
}

// eachSandbox runs do for every named sandbox, printing each name done, as
// docker stop and docker rm do: a failure is reported and the rest still
// handled.
func eachSandbox(refs []string, do func(*registry.Registry, registry.Record) error) error {
	reg, err := openRegistry()
	if err != nil {
		return err
	}
	var failed error
	for _, ref := range refs {
		r, err := reg.Get(ref)
		if err == nil {
			err = do(reg, r)
		}
		if err != nil {
			if failed != nil {
				fmt.Fprintf(os.Stderr, "netns-run: %v\n", failed)
			}
			failed = err
			continue
		}
		fmt.Println(ref)
	}
	return failed
}

// findSandbox opens the registry and finds one sandbox in it.
func findSandbox(ref string) (*registry.Registry, registry.Record, error) {
	reg, err := openRegistry()
	if err != nil {
		return nil, registry.Record{}, err
	}
	r, err := reg.Get(ref)
	return reg, r, err
}

// stop asks the command to end through its supervisor, then kills the
// sandbox's agent, and waits for the supervisor to finish its cleanup.
func stop(r registry.Record, grace time.Duration) {
	gone := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if !registry.Alive(r.Pid, r.PidStart) {
				return true
			}
		}
		return !registry.Alive(r.Pid, r.PidStart)
	}
	syscall.Kill(r.Pid, syscall.SIGTERM)
	if gone(grace) {
		return
	}
	if r.AgentPid > 0 {
		syscall.Kill(r.AgentPid, syscall.SIGKILL)
	}
	if !gone(5 * time.Second) {
		syscall.Kill(r.Pid, syscall.SIGKILL)
	}
}

func newRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] SANDBOX...",
		Short: "Forget exited sandboxes (-f: stop running ones first)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachSandbox(args, func(reg *registry.Registry, r registry.Record) error {
				if r.State == registry.Running {
					if !force {
						return fmt.Errorf("sandbox %s is running: stop it first, or use rm -f", r.Name)
					}
					stop(r, 0)
				}
				return reg.Remove(r.ID)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop a running sandbox first")
	return cmd
}

func newLogsCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] SANDBOX",
		Short: "Show the output of a detached sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, r, err := findSandbox(args[0])
			if err != nil {
				return err
			}
			if r.LogPath == "" {
				return fmt.Errorf("sandbox %s was not started with -d: its output went to its terminal", args[0])
			}
			f, err := os.Open(r.LogPath)
			if err != nil {
				return fmt.Errorf("open log: %w", err)
			}
			defer f.Close()
			for {
				if _, err := io.Copy(os.Stdout, f); err != nil {
					return err
				}
				if !follow || !registry.Alive(r.Pid, r.PidStart) {
					return nil
				}
				time.Sleep(200 * time.Millisecond)
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the sandbox exits")
	return cmd
}

func newPortCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "port SANDBOX [PRIVATE_PORT[/PROTO]]",
		Short: "List a sandbox's published ports, or the host addresses of one (port add / port rm change them)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, r, err := findSandbox(args[0])
			if err != nil {
				return err
			}
			if len(args) == 1 {
				printPorts(r.Ports)
				return nil
			}
			port, proto, err := parsePrivatePort(args[1])
			if err != nil {
				return err
			}
			found := false
			for _, m := range forward.Bindings(r.Ports) {
				if m.ContainerPort == port && m.Proto == forward.Proto(proto) {
					fmt.Println(net.JoinHostPort(m.HostIP.String(), fmt.Sprint(m.HostPort)))
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no public port '%d/%s' published for %s", port, proto, args[0])
			}
			return nil
		},
	}
	cmd.AddCommand(portChange("add", "Publish more ports of a running sandbox"), portChange("rm", "Withdraw published ports of a running sandbox"))
	return cmd
}

// parsePrivatePort reads docker port's PRIVATE_PORT[/PROTO] (tcp when
// none is given).
func parsePrivatePort(s string) (uint16, string, error) {
	p, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || (proto != "tcp" && proto != "udp") {
		return 0, "", fmt.Errorf("invalid port %q: want PORT or PORT/tcp or PORT/udp, e.g. 80/tcp", s)
	}
	return uint16(n), proto, nil
}

// printPorts prints `docker port` lines: 80/tcp -> 0.0.0.0:8080, then
// 80/tcp -> [::]:8080 for a port on every address.
func printPorts(ms []forward.Mapping) {
	for _, m := range forward.Bindings(ms) {
		fmt.Printf("%d/%s -> %s\n", m.ContainerPort, m.Proto, net.JoinHostPort(m.HostIP.String(), fmt.Sprint(m.HostPort)))
	}
}

func portChange(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " SANDBOX SPEC...",
		Short: short,
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := runningRecord(args[0])
			if err != nil {
				return err
			}
			if r.Network == runner.Private {
				return fmt.Errorf("sandbox %s is on a private network: ports can change at run time only on shared networks (--network bridge or your own)", args[0])
			}
			var ms []forward.Mapping
			for _, spec := range args[1:] {
				got, err := forward.ParseSpec(spec)
				if err != nil {
					return err
				}
				ms = append(ms, got...)
			}
			// The sandbox's supervisor owns its ports: it asks the daemon
			// and records them.
			req := wire.ControlRequest{RemovePorts: &wire.PortsRequest{Ports: ms}}
			if verb == "add" {
				req = wire.ControlRequest{AddPorts: &wire.PortsRequest{Ports: ms}}
			}
			ports, err := runner.ChangePorts(r.ControlSocket, req)
			if err != nil {
				return err
			}
			printPorts(ports)
			return nil
		},
	}
}

func newDaemonCommand() *cobra.Command {
	var logLevel, metrics string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Host the shared networks (started on demand); daemon logs shows its log",
		Long: `Host the shared networks: their switches, gateways, DHCP and DNS, and
their members' published ports. The first sandbox on a shared network
starts it, and it exits a moment after the last one leaves: it is not
for direct use.

The daemon started on demand logs to $XDG_RUNTIME_DIR/netns-run/daemon.log
(/tmp/netns-run-UID/daemon.log without XDG_RUNTIME_DIR), rotated once at
8 MiB to daemon.log.1; netns-run daemon logs prints them. Its level is
daemon.json's "log-level" ($XDG_CONFIG_HOME/netns-run/daemon.json, else
~/.config/netns-run/daemon.json): at debug it logs every member's join
and leave with its address, lease sessions, port changes and the
switch's drops (one line per member and reason a second, with the
count). daemon.json's "member-limits" bound what one member may make it
hold: {"tcp": 160, "tcp-handshakes": 32, "udp": 40, "new-tcp-per-second":
1000} by default; a key left out keeps its default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			level, err := daemon.ConfiguredLogLevel(logLevel)
			if err != nil {
				return err
			}
			rt, reg, err := registry.OpenDefault()
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(daemon.LogOutput(rt), &slog.HandlerOptions{Level: level}))
			store, err := openStore()
			if err != nil {
				return err
			}
			set, err := applyDaemonSettings(store, logger)
			if err != nil {
				return err
			}
			if metrics == "" {
				if metrics, err = daemon.ConfiguredMetricsAddr(); err != nil {
					return err
				}
			}
			return daemon.Serve(rt, daemon.Config{Store: store, Registry: reg, Upstreams: resolver.HostUpstreams(), Logger: logger, MetricsAddr: metrics,
				MemberLimits: set.MemberLimits.Limits()})
		},
	}
	cmd.Flags().StringVar(&logLevel, "log-level", "", `debug, info, warn or error (default: daemon.json's "log-level", else info)`)
	cmd.Flags().StringVar(&metrics, "metrics", "", "serve Prometheus metrics on ADDR: a loopback HOST:PORT or a unix socket's absolute path (default: daemon.json's metrics-addr)")
	cmd.AddCommand(newDaemonLogsCommand())
	return cmd
}

// applyDaemonSettings reads the daemon settings and gives the default
// bridge the IPv6 side they ask for. While sandboxes are on the bridge it
// stays as it is (they hold addresses of the bridge as it was), with a
// warning.
func applyDaemonSettings(store *netstore.Store, log *slog.Logger) (daemon.Settings, error) {
	path, err := daemon.SettingsPath()
	if err != nil {
		return daemon.Settings{}, err
	}
	set, err := daemon.LoadSettings(path)
	if err != nil {
		return daemon.Settings{}, err
	}
	changed, err := store.SetBridgeIPv6(set.IPv6, set.FixedCIDRv6)
	switch {
	case errors.Is(err, netstore.ErrHasMembers):
		log.Warn("the default bridge keeps its IPv6 setting until its members are gone", "settings", path, "err", err)
	case err != nil:
		return daemon.Settings{}, fmt.Errorf("daemon settings %s: %w", path, err)
	case changed:
		log.Info("the default bridge's IPv6 changed", "settings", path, "ipv6", set.IPv6)
	}
	return set, nil
}
