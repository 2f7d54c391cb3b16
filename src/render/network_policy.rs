//! NetworkPolicies that let only the course pods (and the operator's Jobs) reach the data stores
//! (filled in by the data-layer work).
