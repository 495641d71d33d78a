//! Parts of a page whose code the browser loads only for a page that shows them: the server
//! renders them with the page, and the browser hydrates them once their module has come. Until
//! then the server's markup stays as it is (its forms post as plain HTML forms do), and the rest
//! of the page does not wait for it.
//!
//! Leptos' `Suspend` cannot be used for this: still pending, it hydrates as empty and then builds
//! its view anew beside the server's markup. A deferred part renders exactly one root element,
//! which is what it hydrates once its view has come.

use std::{cell::RefCell, rc::Rc};

use leptos::{
    prelude::*,
    tachys::{
        hydration::Cursor,
        no_attrs,
        renderer::types::{Element, Node},
        view::{Mountable, Position, PositionState, Render, RenderHtml, any_view::AnyViewState},
    },
};

/// A part of a page, rendered at once where its code is at hand (the server), else once its
/// module has come.
pub struct Deferred(Part);

enum Part {
    Ready(AnyView),
    // The browser runs one thread: the view only has to be `Send` for the server's sake.
    #[cfg(feature = "hydrate")]
    Loading(send_wrapper::SendWrapper<std::pin::Pin<Box<dyn Future<Output = AnyView>>>>),
}

impl Deferred {
    pub fn ready(view: AnyView) -> Self {
        Self(Part::Ready(view))
    }

    /// The part `load` gives, asked for again until its module comes (a server restarting).
    #[cfg(feature = "hydrate")]
    pub fn load<F>(load: impl Fn() -> F + 'static) -> Self
    where
        F: Future<Output = Result<AnyView, leptos::wasm_split::SplitLoaderError>>,
    {
        let view = super::until_some(async move || load().await.ok());
        Self(Part::Loading(send_wrapper::SendWrapper::new(Box::pin(
            view,
        ))))
    }
}

/// Declares functions giving parts of a page as [`Deferred`]s: `module: fn part(arg: Type) =>
/// view;` In the browser, `view` (a function from `Type` to `AnyView`) goes into the module named
/// `module`, shared by the parts declared with that name; `Type` is cloned for each try.
macro_rules! deferred {
    ($($module:ident: fn $part:ident($arg:ident: $ty:ty) => $view:path;)*) => {$(
        fn $part($arg: $ty) -> $crate::pages::deferred::Deferred {
            #[cfg(feature = "hydrate")]
            return $crate::pages::deferred::Deferred::load(move || $part::$part($arg.clone()));
            #[cfg(not(feature = "hydrate"))]
            $crate::pages::deferred::Deferred::ready($view($arg))
        }

        #[cfg(feature = "hydrate")]
        mod $part {
            use super::*;

            #[leptos::wasm_split::wasm_split(
                $module,
                wasm_split_path = ::leptos::wasm_split,
                fallible
            )]
            pub fn $part($arg: $ty) -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
                Ok($view($arg))
            }
        }
    )*};
}
pub(crate) use deferred;

/// A deferred part in the page: its view once it has come, and until then the node it will
/// take: the server's markup it hydrates, or a placeholder where it will be built.
pub struct DeferredState(Rc<RefCell<Slot>>);

struct Slot {
    view: Option<AnyViewState>,
    waiting: Option<Node>,
}

impl Render for Deferred {
    type State = DeferredState;

    fn build(self) -> Self::State {
        match self.0 {
            Part::Ready(view) => DeferredState::of(view.build()),
            #[cfg(feature = "hydrate")]
            Part::Loading(view) => {
                let placeholder: Node = leptos::tachys::renderer::Rndr::create_placeholder().into();
                let slot = DeferredState::waiting_at(placeholder.clone());
                slot.when_come(view.take(), move |view| {
                    use wasm_bindgen::JsCast;
                    let mut state = view.build();
                    if let Some(parent) = placeholder.parent_node() {
                        state.mount(parent.unchecked_ref(), Some(&placeholder));
                    }
                    remove(&placeholder);
                    state
                });
                slot
            }
        }
    }

    fn rebuild(self, state: &mut Self::State) {
        let mut new = self.build();
        state.insert_before_this(&mut new);
        state.unmount();
        *state = new;
    }
}

impl DeferredState {
    fn of(view: AnyViewState) -> Self {
        Self(Rc::new(RefCell::new(Slot {
            view: Some(view),
            waiting: None,
        })))
    }

    #[cfg(feature = "hydrate")]
    fn waiting_at(node: Node) -> Self {
        Self(Rc::new(RefCell::new(Slot {
            view: None,
            waiting: Some(node),
        })))
    }

    /// Once `view` has come, puts in what `place` makes of it, unless the part was taken off the
    /// page before (its owner cleaned up).
    #[cfg(feature = "hydrate")]
    fn when_come(
        &self,
        view: impl Future<Output = AnyView> + 'static,
        place: impl FnOnce(AnyView) -> AnyViewState + 'static,
    ) {
        let slot = Rc::clone(&self.0);
        leptos::reactive::spawn_local_scoped_with_cancellation(async move {
            let view = view.await;
            let state = place(view);
            let mut slot = slot.borrow_mut();
            slot.waiting = None;
            slot.view = Some(state);
        });
    }
}

impl Mountable for DeferredState {
    fn unmount(&mut self) {
        let mut slot = self.0.borrow_mut();
        if let Some(view) = &mut slot.view {
            view.unmount();
        }
        if let Some(node) = &slot.waiting {
            remove(node);
        }
    }

    fn mount(&mut self, parent: &Element, marker: Option<&Node>) {
        let mut slot = self.0.borrow_mut();
        if let Some(view) = &mut slot.view {
            view.mount(parent, marker);
        } else if let Some(node) = &mut slot.waiting {
            node.mount(parent, marker);
        }
    }

    fn insert_before_this(&self, child: &mut dyn Mountable) -> bool {
        let slot = self.0.borrow();
        match (&slot.view, &slot.waiting) {
            (Some(view), _) => view.insert_before_this(child),
            (None, Some(node)) => node.insert_before_this(child),
            (None, None) => false,
        }
    }

    fn elements(&self) -> Vec<Element> {
        let slot = self.0.borrow();
        slot.view
            .as_ref()
            .map(Mountable::elements)
            .unwrap_or_default()
    }
}

/// Takes `node` out of the page (tachys' own `Node::unmount` is not written yet).
fn remove(node: &Node) {
    if let Some(parent) = node.parent_node() {
        let _ = parent.remove_child(node);
    }
}

impl RenderHtml for Deferred {
    type AsyncOutput = Self;
    type Owned = Self;

    const MIN_LENGTH: usize = 0;

    fn dry_resolve(&mut self) {
        match &mut self.0 {
            Part::Ready(view) => view.dry_resolve(),
            #[cfg(feature = "hydrate")]
            Part::Loading(_) => {}
        }
    }

    async fn resolve(self) -> Self::AsyncOutput {
        match self.0 {
            Part::Ready(view) => Self::ready(view.resolve().await),
            #[cfg(feature = "hydrate")]
            loading => Self(loading),
        }
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<leptos::tachys::html::attribute::any_attribute::AnyAttribute>,
    ) {
        match self.0 {
            Part::Ready(view) => {
                view.to_html_with_buf(buf, position, escape, mark_branches, extra_attrs)
            }
            // Rendered to HTML only on the server, where the part's code is at hand.
            #[cfg(feature = "hydrate")]
            Part::Loading(_) => {}
        }
    }

    fn hydrate<const FROM_SERVER: bool>(
        self,
        cursor: &Cursor,
        position: &PositionState,
    ) -> Self::State {
        match self.0 {
            Part::Ready(view) => DeferredState::of(view.hydrate::<FROM_SERVER>(cursor, position)),
            #[cfg(feature = "hydrate")]
            Part::Loading(view) => {
                // Where an element would hydrate: the part's one root element.
                match position.get() {
                    Position::FirstChild => cursor.child(),
                    Position::Current => {}
                    _ => cursor.sibling(),
                }
                let root = cursor.current();
                position.set(Position::NextChild);
                let slot = DeferredState::waiting_at(root.clone());
                slot.when_come(view.take(), move |view| {
                    use wasm_bindgen::JsCast;
                    let cursor = Cursor::new(root.unchecked_into());
                    view.hydrate::<FROM_SERVER>(&cursor, &PositionState::new(Position::Current))
                });
                slot
            }
        }
    }

    fn into_owned(self) -> Self::Owned {
        self
    }
}

no_attrs!(Deferred);
