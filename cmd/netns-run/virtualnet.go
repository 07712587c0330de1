package main

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/runner"
)

// Docker's host and none networks are no more than names: no subnet, no
// daemon, nothing stored. netns-run lists and inspects them the same way,
// with ids derived from the user's bridge id, so that they stay the same
// for the user and differ between users, as Docker's do between hosts.
var virtualDrivers = map[string]string{runner.Host: "host", runner.None: "null"}

func virtualNetworks(bridge netstore.Network) []netstore.Network {
	var out []netstore.Network
	for _, name := range []string{runner.Host, runner.None} {
		sum := sha256.Sum256([]byte(bridge.ID + "/" + name))
		out = append(out, netstore.Network{Name: name, ID: hex.EncodeToString(sum[:]), Driver: virtualDrivers[name], Created: bridge.Created})
	}
	return out
}

// allNetworks are the stored networks and the virtual ones, by name, as
// docker network ls lists them.
func allNetworks(store *netstore.Store) ([]netstore.Network, error) {
	nets, err := store.List()
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.BuiltIn() {
			nets = append(nets, virtualNetworks(n)...)
			break
		}
	}
	slices.SortStableFunc(nets, func(a, b netstore.Network) int { return strings.Compare(a.Name, b.Name) })
	return nets, nil
}

// findNetwork is store.Get that also knows the virtual networks, by name
// or id prefix.
func findNetwork(store *netstore.Store, ref string) (netstore.Network, error) {
	n, err := store.Get(ref)
	if err == nil {
		return n, nil
	}
	bridge, berr := store.Get(netstore.BridgeName)
	if berr != nil {
		return netstore.Network{}, err
	}
	for _, v := range virtualNetworks(bridge) {
		if ref == v.Name || (len(ref) >= 3 && strings.HasPrefix(v.ID, ref)) {
			return v, nil
		}
	}
	return netstore.Network{}, err
}
