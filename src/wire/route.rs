//! The route table: every path the collector answers, and what each one carries.
//!
//! A route is named by its template, which the collector stores in the envelope and uses as
//! the metric label; the publisher reads the template back to pick the decoder. Both sides
//! go through [`Route`], so a path is spelled in this file only.
//!
//! | template | protocol | body |
//! |---|---|---|
//! | `/i`, `/ice.png`, `/com.snowplowanalytics.snowplow/tp1` | Snowplow | a GET query string |
//! | `/com.snowplowanalytics.snowplow/tp2` | Snowplow | a query string, or a `payload_data` POST |
//! | `/r/tp2`, `/r/{path}` | Snowplow | a redirect (only when `collector.redirects` allows) |
//! | `/v1/{track,identify,page,screen,group,alias}`, `/v1/{t,i,p,s,g,a}` | Segment | one message |
//! | `/v1/{batch,import,b}` | Segment | `{"batch": [...]}` |
//! | `/v1.0/event`, `/v1.0/events` | pycolytics | one object, an array of objects |
//! | `/collect`, `/collect/{stream}` | collect | an object or an array of objects |
//! | `/health`, `/ready`, `/robots.txt`, `/crossdomain.xml` | none | answered, never stored |

use std::fmt;

/// A Segment call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A user action, named by `event`.
    Track,
    /// Who the user is (`traits`).
    Identify,
    /// A web page view.
    Page,
    /// A mobile screen view.
    Screen,
    /// The user's group or account (`groupId`).
    Group,
    /// Links a previous id to `userId`.
    Alias,
}

impl Call {
    /// Every call, in Segment's documentation order.
    pub const ALL: [Call; 6] = [
        Call::Identify,
        Call::Track,
        Call::Page,
        Call::Screen,
        Call::Group,
        Call::Alias,
    ];

    /// The `type` name (also the `event` column's value).
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Identify => "identify",
            Call::Page => "page",
            Call::Screen => "screen",
            Call::Group => "group",
            Call::Alias => "alias",
        }
    }

    /// The call a `type` names (exactly, lower-case).
    pub fn parse(name: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// What a Segment route's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentBody {
    /// One message of this call type.
    Single(Call),
    /// `{"batch": [...]}`.
    Batch,
}

/// One of Segment's `/v1/*` routes: its template and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRoute {
    template: &'static str,
    body: SegmentBody,
}

impl SegmentRoute {
    /// What the route's body holds.
    pub fn body(self) -> SegmentBody {
        self.body
    }

    /// Whether the body is a batch.
    pub fn is_batch(self) -> bool {
        self.body == SegmentBody::Batch
    }
}

const fn segment(template: &'static str, body: SegmentBody) -> Route {
    Route::Segment(SegmentRoute { template, body })
}

/// The protocol a route speaks: the `source` label of the rejection metric, and the shape of
/// its error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Snowplow trackers.
    Snowplow,
    /// Segment and RudderStack SDKs.
    Segment,
    /// pycolytics clients.
    Pycolytics,
    /// The generic endpoint.
    Collect,
}

impl Source {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Snowplow => "snowplow",
            Source::Segment => "segment",
            Source::Pycolytics => "pycolytics",
            Source::Collect => "collect",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every route the collector answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/i`: Snowplow's pixel.
    Pixel,
    /// `/ice.png`: Snowplow's legacy pixel.
    IcePixel,
    /// `/com.snowplowanalytics.snowplow/tp1`: tracker protocol v1 (GET only).
    Tp1,
    /// `/com.snowplowanalytics.snowplow/tp2`: tracker protocol v2 (GET pixel, POST batches).
    Tp2,
    /// `/r/tp2`: a redirect whose query is a tp2 event.
    Redirect,
    /// `/r/{path}`: any other one-segment redirect path.
    RedirectOther,
    /// Segment's HTTP tracking API.
    Segment(SegmentRoute),
    /// `/v1.0/event`: one pycolytics event.
    PycolyticsEvent,
    /// `/v1.0/events`: an array of pycolytics events.
    PycolyticsEvents,
    /// `/collect`: the generic endpoint without a stream.
    Collect,
    /// `/collect/{stream}`: the generic endpoint with a stream name.
    CollectStream,
    /// `/health`: liveness.
    Health,
    /// `/ready`: readiness.
    Ready,
    /// `/robots.txt`.
    Robots,
    /// `/crossdomain.xml` (when `collector.cross_domain` is on).
    CrossDomain,
}

/// Segment's routes: the long names, then analytics.js' short aliases (`t`rack, `p`age,
/// `i`dentify, `g`roup, `a`lias, `s`creen, `b`atch).
pub const SEGMENT_ROUTES: [Route; 15] = [
    segment("/v1/track", SegmentBody::Single(Call::Track)),
    segment("/v1/identify", SegmentBody::Single(Call::Identify)),
    segment("/v1/page", SegmentBody::Single(Call::Page)),
    segment("/v1/screen", SegmentBody::Single(Call::Screen)),
    segment("/v1/group", SegmentBody::Single(Call::Group)),
    segment("/v1/alias", SegmentBody::Single(Call::Alias)),
    segment("/v1/batch", SegmentBody::Batch),
    segment("/v1/import", SegmentBody::Batch),
    segment("/v1/t", SegmentBody::Single(Call::Track)),
    segment("/v1/p", SegmentBody::Single(Call::Page)),
    segment("/v1/i", SegmentBody::Single(Call::Identify)),
    segment("/v1/g", SegmentBody::Single(Call::Group)),
    segment("/v1/a", SegmentBody::Single(Call::Alias)),
    segment("/v1/s", SegmentBody::Single(Call::Screen)),
    segment("/v1/b", SegmentBody::Batch),
];

/// The routes a path matches exactly, whatever the configuration.
const FIXED: [Route; 9] = [
    Route::Pixel,
    Route::IcePixel,
    Route::Tp1,
    Route::Tp2,
    Route::PycolyticsEvent,
    Route::PycolyticsEvents,
    Route::Collect,
    Route::Health,
    Route::Ready,
];

impl Route {
    /// The routes a `collector.paths` alias may point at.
    pub const ALIAS_TARGETS: [Route; 5] = [
        Route::Tp2,
        Route::Tp1,
        Route::Pixel,
        Route::IcePixel,
        Route::Redirect,
    ];

    /// The route's template: its path, with `{…}` where the path varies.
    pub fn template(self) -> &'static str {
        match self {
            Route::Pixel => "/i",
            Route::IcePixel => "/ice.png",
            Route::Tp1 => "/com.snowplowanalytics.snowplow/tp1",
            Route::Tp2 => "/com.snowplowanalytics.snowplow/tp2",
            Route::Redirect => "/r/tp2",
            Route::RedirectOther => "/r/{path}",
            Route::Segment(s) => s.template,
            Route::PycolyticsEvent => "/v1.0/event",
            Route::PycolyticsEvents => "/v1.0/events",
            Route::Collect => "/collect",
            Route::CollectStream => "/collect/{stream}",
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Robots => "/robots.txt",
            Route::CrossDomain => "/crossdomain.xml",
        }
    }

    /// The route a request path names among those every collector serves: the Snowplow,
    /// Segment, pycolytics and collect routes and the probes. Redirects, `/robots.txt`,
    /// `/crossdomain.xml` and aliases depend on `[collector]` and are matched there.
    pub fn of_path(path: &str) -> Option<Route> {
        if path.starts_with("/v1/") {
            return SEGMENT_ROUTES.into_iter().find(|r| r.template() == path);
        }
        if let Some(route) = FIXED.into_iter().find(|r| r.template() == path) {
            return Some(route);
        }
        path.strip_prefix("/collect/")
            .is_some_and(|stream| !stream.is_empty() && !stream.contains('/'))
            .then_some(Route::CollectStream)
    }

    /// The route a stored template names.
    pub fn of_template(template: &str) -> Option<Route> {
        if template.starts_with("/v1/") {
            return SEGMENT_ROUTES
                .into_iter()
                .find(|r| r.template() == template);
        }
        FIXED
            .into_iter()
            .chain([
                Route::CollectStream,
                Route::Redirect,
                Route::RedirectOther,
                Route::Robots,
                Route::CrossDomain,
            ])
            .find(|r| r.template() == template)
    }

    /// The protocol of a tracking route; `None` for the routes that store nothing.
    pub fn source(self) -> Option<Source> {
        match self {
            Route::Pixel
            | Route::IcePixel
            | Route::Tp1
            | Route::Tp2
            | Route::Redirect
            | Route::RedirectOther => Some(Source::Snowplow),
            Route::Segment(_) => Some(Source::Segment),
            Route::PycolyticsEvent | Route::PycolyticsEvents => Some(Source::Pycolytics),
            Route::Collect | Route::CollectStream => Some(Source::Collect),
            Route::Health | Route::Ready | Route::Robots | Route::CrossDomain => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_names_its_route_again() {
        let all = SEGMENT_ROUTES.into_iter().chain(FIXED).chain([
            Route::CollectStream,
            Route::Redirect,
            Route::RedirectOther,
            Route::Robots,
            Route::CrossDomain,
        ]);
        for route in all {
            assert_eq!(Route::of_template(route.template()), Some(route), "{route}");
        }
    }

    #[test]
    fn paths_match_exactly_and_a_stream_is_one_segment() {
        assert_eq!(Route::of_path("/i"), Some(Route::Pixel));
        assert_eq!(
            Route::of_path("/collect/orders"),
            Some(Route::CollectStream)
        );
        assert_eq!(Route::of_path("/collect/"), None);
        assert_eq!(Route::of_path("/collect/a/b"), None);
        assert_eq!(Route::of_path("/v1/trac"), None);
        assert_eq!(
            Route::of_path("/r/tp2"),
            None,
            "redirects depend on [collector]"
        );
        let Some(Route::Segment(b)) = Route::of_path("/v1/b") else {
            panic!("/v1/b is Segment's");
        };
        assert!(b.is_batch());
        let Some(Route::Segment(t)) = Route::of_template("/v1/t") else {
            panic!("/v1/t is Segment's");
        };
        assert_eq!(t.body(), SegmentBody::Single(Call::Track));
    }
}
