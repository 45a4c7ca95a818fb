//! A service's state as its handlers reach it: one `Arc` around everything,
//! because axum clones the state for every request (its `State` extractor
//! and each extractor that reads the state). Cloned field by field, a dozen
//! pools, caches and handles cost the query service 4% of its CPU on
//! uncached list pages (bench/README.md, "Tenth session").

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::TokenVerifier;

/// `T` behind one reference count; handlers read its fields through `Deref`.
pub struct Shared<T>(Arc<T>);

// Not derived: the derive would ask `T: Clone`, which the services need not be.
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> From<T> for Shared<T> {
    fn from(services: T) -> Self {
        Self(Arc::new(services))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Services whose requests carry access tokens: where the `AuthUser`
/// extractor finds the verifier.
pub trait HoldsVerifier {
    fn verifier(&self) -> &Arc<TokenVerifier>;
}

impl<T: HoldsVerifier> FromRef<Shared<T>> for Arc<TokenVerifier> {
    fn from_ref(state: &Shared<T>) -> Self {
        state.verifier().clone()
    }
}
